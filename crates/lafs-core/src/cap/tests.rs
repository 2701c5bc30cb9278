use super::*;
use proptest::prelude::*;

fn parse(s: &str) -> Cap {
    s.parse::<Cap>()
        .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn err(s: &str) -> CapError {
    match s.parse::<Cap>() {
        Ok(c) => panic!("{s:?} should be refused, parsed as {c:?}"),
        Err(e) => e,
    }
}

fn b32(s: &str) -> Vec<u8> {
    base32::decode(s).expect("valid base32 in test")
}

fn si_b32(c: &Cap) -> String {
    base32::encode(&c.storage_index().expect("has a storage index"))
}

// ---------------------------------------------------------------------------------------
// Known answers. Every cap string below was produced by stock Tahoe-LAFS 1.20
// (`allmydata.uri` in ~/.cache/lafs/tahoe-venv), not by this code.
// ---------------------------------------------------------------------------------------

const W3: &str = "ambqgaydambqgaydambqgaydam"; // writekey 16 x 0x03
const FP4: &str = "aqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqca"; // fingerprint 32 x 0x04

#[test]
fn known_answer_ssk_from_brief() {
    let w = format!("URI:SSK:{W3}:{FP4}");
    let cap = parse(&w);
    let Cap::Ssk(inner) = &cap else {
        panic!("not SSK: {cap:?}")
    };
    assert_eq!(inner.writekey, [3u8; 16]);
    assert_eq!(inner.fingerprint, [4u8; 32]);
    assert_eq!(cap.to_string(), w);
    assert_eq!(
        base32::encode(&inner.readkey()),
        "iosg2ayya4fhrlkfzsjqywrfaq"
    );
    assert_eq!(si_b32(&cap), "am5coqpf2njzwdni7uj7haq6fm");
    let ro = cap.readonly().expect("has a read cap");
    assert_eq!(
        ro.to_string(),
        format!("URI:SSK-RO:iosg2ayya4fhrlkfzsjqywrfaq:{FP4}")
    );
    let v = format!("URI:SSK-Verifier:am5coqpf2njzwdni7uj7haq6fm:{FP4}");
    assert_eq!(cap.verifier().expect("has a verifier").to_string(), v);
    assert_eq!(ro.verifier().expect("has a verifier").to_string(), v);
    assert_eq!(si_b32(&ro), "am5coqpf2njzwdni7uj7haq6fm");
    assert_eq!(si_b32(&parse(&v)), "am5coqpf2njzwdni7uj7haq6fm");
    // Directory forms (stock: DIR2 wraps the same body).
    let d = parse(&format!("URI:DIR2:{W3}:{FP4}"));
    assert_eq!(
        d.verifier().expect("has a verifier").to_string(),
        format!("URI:DIR2-Verifier:am5coqpf2njzwdni7uj7haq6fm:{FP4}")
    );
}

/// writekey = bytes(range(16)), fingerprint = bytes(range(32, 64)); stock output.
const WK: &str = "aaaqeayeaudaocajbifqydiob4";
const RK: &str = "zlnpn42lu7xedonux53kr42hsm";
const SI: &str = "axmc3zjy3mkanylpyx7u2zuqum";
const FP: &str = "eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q";

#[test]
fn known_answers_mutable_files_and_dirs() {
    // (write kind, read kind, verifier kind) for each family, all from stock.
    let families = [
        ("SSK", "SSK-RO", "SSK-Verifier"),
        ("MDMF", "MDMF-RO", "MDMF-Verifier"),
        ("DIR2", "DIR2-RO", "DIR2-Verifier"),
        ("DIR2-MDMF", "DIR2-MDMF-RO", "DIR2-MDMF-Verifier"),
    ];
    for (wk, rk, vk) in families {
        let w = format!("URI:{wk}:{WK}:{FP}");
        let r = format!("URI:{rk}:{RK}:{FP}");
        let v = format!("URI:{vk}:{SI}:{FP}");
        let (wc, rc, vc) = (parse(&w), parse(&r), parse(&v));
        for (c, s, k) in [(&wc, &w, wk), (&rc, &r, rk), (&vc, &v, vk)] {
            assert_eq!(c.to_string(), *s);
            assert_eq!(c.kind(), k);
            assert_eq!(si_b32(c), SI, "{k}");
            assert_eq!(c.size(), None);
            assert_eq!(c.needed_shares(), None);
            assert_eq!(c.total_shares(), None);
            assert_eq!(c.is_directory(), k.starts_with("DIR2"));
        }
        // Diminish chains: write → read → verify, and verify/read are fixed points.
        assert_eq!(wc.readonly().as_ref(), Some(&rc));
        assert_eq!(wc.verifier().as_ref(), Some(&vc));
        assert_eq!(rc.readonly().as_ref(), Some(&rc));
        assert_eq!(rc.verifier().as_ref(), Some(&vc));
        assert_eq!(vc.readonly().as_ref(), Some(&vc));
        assert_eq!(vc.verifier().as_ref(), Some(&vc));
    }
}

const CHK: &str = "URI:CHK:l6zwjsbrrtopphmwkisghpjwqy:p5th2xpblm4deqn4evxkb32e3cauj53chncuwnigeqagspxmsczq:3:10:56";
const CHK_V: &str = "URI:CHK-Verifier:jfkklbgrshpkgd2o6utcietf2u:p5th2xpblm4deqn4evxkb32e3cauj53chncuwnigeqagspxmsczq:3:10:56";

#[test]
fn known_answer_chk() {
    let c = parse(CHK);
    assert_eq!(c.to_string(), CHK);
    assert_eq!(c.kind(), "CHK");
    assert_eq!(si_b32(&c), "jfkklbgrshpkgd2o6utcietf2u");
    assert_eq!((c.needed_shares(), c.total_shares()), (Some(3), Some(10)));
    assert_eq!(c.size(), Some(56));
    let Cap::Chk(inner) = &c else {
        panic!("not CHK")
    };
    assert_eq!(inner.key.to_vec(), b32("l6zwjsbrrtopphmwkisghpjwqy"));
    let v = c.verifier().expect("has a verifier");
    assert_eq!(v.to_string(), CHK_V);
    assert_eq!(v, parse(CHK_V));
    assert_eq!(v, Cap::ChkVerifier(inner.verifier()));
    assert_eq!(c.readonly().as_ref(), Some(&c));
    assert_eq!(v.readonly().as_ref(), Some(&v));
    assert_eq!(v.verifier().as_ref(), Some(&v));
    assert_eq!(v.size(), Some(56));
}

#[test]
fn known_answers_chk_extremes_and_dirs() {
    // key = bytes(range(100, 116)), UEB hash = bytes(range(200, 232)); stock output.
    let ueb = "zde4vs6mzxhm7ugr2lj5jvow27mntww33to55x7a4hrohzhf43tq";
    let key = "mrswmz3infvgw3dnnzxxa4lsom";
    let si = "plgme2fd3lm5kr6fojyubb6vie";
    for tail in ["1:1:0", "256:256:18446744073709551615"] {
        let c = parse(&format!("URI:CHK:{key}:{ueb}:{tail}"));
        let v = format!("URI:CHK-Verifier:{si}:{ueb}:{tail}");
        assert_eq!(c.verifier().expect("verifier").to_string(), v);
        let d = parse(&format!("URI:DIR2-CHK:{key}:{ueb}:{tail}"));
        assert_eq!(d.kind(), "DIR2-CHK");
        assert_eq!(si_b32(&d), si);
        let dv = d.verifier().expect("verifier");
        assert_eq!(
            dv.to_string(),
            format!("URI:DIR2-CHK-Verifier:{si}:{ueb}:{tail}")
        );
        assert_eq!(dv.kind(), "DIR2-CHK-Verifier");
        // Stock's own get_verify_cap() of a DIR2-CHK-Verifier trips an assertion; ours is
        // a fixed point.
        assert_eq!(dv.verifier().as_ref(), Some(&dv));
        assert_eq!(d.readonly().as_ref(), Some(&d));
        assert_eq!(d.size(), c.size());
        assert_eq!(dv.needed_shares(), c.needed_shares());
    }
}

#[test]
fn chk_known_answers_file() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/chk-known-answers.json"
    );
    let text = std::fs::read_to_string(path).expect("read chk-known-answers.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let cases = json["cases"].as_object().expect("cases object");
    assert!(cases.len() >= 10);
    let mut checked_chk = 0;
    for (name, case) in cases {
        let cap_s = case["cap"].as_str().expect("cap string");
        let cap = parse(cap_s);
        assert_eq!(cap.to_string(), cap_s, "{name}");
        match case.get("si").and_then(|v| v.as_str()) {
            Some(si) => assert_eq!(si_b32(&cap), si, "{name}"),
            None => assert_eq!(cap.storage_index(), None, "{name}"),
        }
        match case.get("vcap").and_then(|v| v.as_str()) {
            Some(vcap) => {
                let v = cap.verifier().expect("has a verifier");
                assert_eq!(v.to_string(), vcap, "{name}");
                assert_eq!(parse(vcap), v, "{name}");
                assert_eq!(parse(vcap).storage_index(), cap.storage_index(), "{name}");
                checked_chk += 1;
            }
            None => {
                assert_eq!(cap.kind(), "LIT", "{name}");
                assert_eq!(cap.verifier(), None, "{name}");
            }
        }
        if let Some(n) = case.get("n").and_then(|v| v.as_u64()) {
            assert_eq!(cap.size(), Some(n), "{name}");
        }
        if let Some(k) = case.get("k").and_then(|v| v.as_u64()) {
            assert_eq!(cap.needed_shares().map(u64::from), Some(k), "{name}");
        }
        if let Some(n) = case.get("N").and_then(|v| v.as_u64()) {
            assert_eq!(cap.total_shares().map(u64::from), Some(n), "{name}");
        }
    }
    assert!(checked_chk >= 10);
}

#[test]
fn literal_caps() {
    let empty = parse("URI:LIT:");
    assert_eq!(empty, Cap::Lit(LitCap { data: vec![] }));
    assert_eq!(empty.to_string(), "URI:LIT:");
    assert_eq!(empty.size(), Some(0));
    let hello = parse("URI:LIT:nbswy3dp");
    assert_eq!(
        hello,
        Cap::Lit(LitCap {
            data: b"hello".to_vec()
        })
    );
    assert_eq!(hello.size(), Some(5));
    assert_eq!(hello.storage_index(), None);
    assert_eq!(hello.verifier(), None);
    assert_eq!(hello.readonly().as_ref(), Some(&hello));
    assert!(hello.is_readonly() && !hello.is_mutable() && !hello.is_directory());
    // Stock: LiteralDirectoryURI, printed back unchanged; empty directory is `URI:DIR2-LIT:`.
    let d = parse("URI:DIR2-LIT:nbswy3dp");
    assert_eq!(d.kind(), "DIR2-LIT");
    assert_eq!(d.to_string(), "URI:DIR2-LIT:nbswy3dp");
    assert_eq!(d.storage_index(), None);
    assert_eq!(d.verifier(), None);
    assert_eq!(d.readonly().as_ref(), Some(&d));
    assert_eq!(d.size(), Some(5));
    assert_eq!(parse("URI:DIR2-LIT:").to_string(), "URI:DIR2-LIT:");
    let Cap::Dir(dc) = &d else {
        panic!("not a dir")
    };
    assert_eq!(dc.filenode_cap(), &hello);
    // 1-byte and 2-byte data (non-multiple-of-5 lengths).
    assert_eq!(parse("URI:LIT:ae").size(), Some(1));
    assert_eq!(parse("URI:LIT:aaaq").size(), Some(2));
}

#[test]
fn kind_names_and_flags_match_stock() {
    // (kind, is_readonly, is_mutable, has storage index): the values stock 1.20's
    // is_readonly(), is_mutable() and get_storage_index() give for these kinds.
    let ueb = "zde4vs6mzxhm7ugr2lj5jvow27mntww33to55x7a4hrohzhf43tq";
    let table: [(&str, bool, bool, bool); 18] = [
        ("LIT", true, false, false),
        ("CHK", true, false, true),
        ("CHK-Verifier", true, false, true),
        ("SSK", false, true, true),
        ("SSK-RO", true, true, true),
        ("SSK-Verifier", true, false, true),
        ("MDMF", false, true, true),
        ("MDMF-RO", true, true, true),
        ("MDMF-Verifier", true, false, true),
        ("DIR2-LIT", true, false, false),
        ("DIR2-CHK", true, false, true),
        ("DIR2", false, true, true),
        ("DIR2-RO", true, true, true),
        ("DIR2-MDMF", false, true, true),
        ("DIR2-MDMF-RO", true, true, true),
        ("DIR2-CHK-Verifier", true, false, true),
        ("DIR2-Verifier", true, false, true),
        ("DIR2-MDMF-Verifier", true, false, true),
    ];
    for (kind, ro, mutable, has_si) in table {
        let body = if kind.ends_with("LIT") {
            "nbswy3dp".to_owned()
        } else if kind.contains("CHK") {
            format!("{WK}:{ueb}:3:10:1234")
        } else {
            format!("{WK}:{FP}")
        };
        let s = format!("URI:{kind}:{body}");
        let c = parse(&s);
        assert_eq!(c.kind(), kind);
        assert_eq!(c.to_string(), s);
        assert_eq!(c.is_readonly(), ro, "{kind} is_readonly");
        assert_eq!(c.is_mutable(), mutable, "{kind} is_mutable");
        assert_eq!(c.storage_index().is_some(), has_si, "{kind} storage index");
        assert_eq!(c.is_directory(), kind.starts_with("DIR2"), "{kind}");
        assert_eq!(c.is_verifier(), kind.ends_with("Verifier"), "{kind}");
        assert_eq!(c.needed_shares().is_some(), kind.contains("CHK"), "{kind}");
        let r = c.readonly().expect("every known cap has a read-only form");
        assert!(r.is_readonly(), "{kind}");
        assert_eq!(r.is_directory(), c.is_directory());
        if let Some(v) = c.verifier() {
            assert!(v.is_verifier(), "{kind}");
            assert_eq!(v.storage_index(), c.storage_index(), "{kind}");
            assert_eq!(r.verifier().as_ref(), Some(&v), "{kind}");
        } else {
            assert!(kind.ends_with("LIT"));
        }
    }
    let u = parse("URI:NEW-KIND:foo");
    assert_eq!(u.kind(), "unknown");
    assert!(!u.is_readonly() && !u.is_mutable() && !u.is_directory() && !u.is_verifier());
    assert_eq!(
        (u.storage_index(), u.size(), u.readonly(), u.verifier()),
        (None, None, None, None)
    );
}

#[test]
fn mdmf_extension_is_accepted_and_dropped() {
    // Stock's MDMF regexps end in `(:|$)`: anything after the fingerprint and a colon is
    // ignored, and to_string() does not print it back.
    for kind in [
        "MDMF",
        "MDMF-RO",
        "MDMF-Verifier",
        "DIR2-MDMF",
        "DIR2-MDMF-RO",
        "DIR2-MDMF-Verifier",
    ] {
        for ext in [":", ":3:131073", ":ext:more", ": anything at all\n"] {
            let c = parse(&format!("URI:{kind}:{WK}:{FP}{ext}"));
            assert_eq!(c.kind(), kind);
            assert_eq!(c.to_string(), format!("URI:{kind}:{WK}:{FP}"));
        }
        // Without the colon the fingerprint field is too long.
        assert!(matches!(
            err(&format!("URI:{kind}:{WK}:{FP}x")),
            CapError::Base32 {
                field: "fingerprint",
                problem: Base32Problem::WrongLength {
                    expected: 52,
                    found: 53
                },
                ..
            }
        ));
    }
    // SSK kinds take no extension (stock: BadURIError).
    for kind in [
        "SSK",
        "SSK-RO",
        "SSK-Verifier",
        "DIR2",
        "DIR2-RO",
        "DIR2-Verifier",
    ] {
        assert!(matches!(
            err(&format!("URI:{kind}:{WK}:{FP}:ext")),
            CapError::FieldCount {
                expected: 2,
                exact: true,
                found: 3,
                ..
            }
        ));
    }
}

#[test]
fn consistent_prefixes_are_accepted_and_dropped() {
    let ok = [
        format!("ro.URI:SSK-RO:{RK}:{FP}"),
        format!("ro.URI:MDMF-RO:{RK}:{FP}"),
        format!("ro.URI:DIR2-RO:{RK}:{FP}"),
        format!("ro.URI:DIR2-MDMF-RO:{RK}:{FP}"),
        format!("ro.URI:SSK-Verifier:{SI}:{FP}"),
        format!("imm.URI:SSK-Verifier:{SI}:{FP}"),
        format!("imm.URI:MDMF-Verifier:{SI}:{FP}"),
        format!("imm.URI:DIR2-Verifier:{SI}:{FP}"),
        format!("ro.{CHK}"),
        format!("imm.{CHK}"),
        format!("imm.{CHK_V}"),
        "imm.URI:LIT:nbswy3dp".to_owned(),
        "ro.URI:LIT:".to_owned(),
        format!("imm.URI:DIR2-CHK:{}", &CHK["URI:CHK:".len()..]),
        "imm.URI:DIR2-LIT:nbswy3dp".to_owned(),
    ];
    for s in ok {
        let c = parse(&s);
        assert!(!matches!(c, Cap::Unknown(_)), "{s}");
        let stripped = s
            .strip_prefix("ro.")
            .or_else(|| s.strip_prefix("imm."))
            .expect("has a prefix");
        assert_eq!(c.to_string(), stripped);
    }
}

#[test]
fn inconsistent_prefixes_are_errors() {
    // Stock returns an UnknownURI carrying MustBeReadonlyError / MustBeDeepImmutableError;
    // it checks the prefix before the fields, so garbage fields give the same error.
    let cases = [
        ("ro.", "SSK", format!("{WK}:{FP}")),
        ("ro.", "MDMF", format!("{WK}:{FP}")),
        ("ro.", "DIR2", format!("{WK}:{FP}")),
        ("ro.", "DIR2-MDMF", format!("{WK}:{FP}")),
        ("imm.", "SSK", format!("{WK}:{FP}")),
        ("imm.", "SSK-RO", format!("{RK}:{FP}")),
        ("imm.", "MDMF-RO", format!("{RK}:{FP}")),
        ("imm.", "DIR2-RO", format!("{RK}:{FP}")),
        ("imm.", "DIR2-MDMF-RO", format!("{RK}:{FP}")),
        ("imm.", "DIR2-MDMF", "garbage".to_owned()),
        ("ro.", "SSK", String::new()),
    ];
    for (prefix, kind, body) in cases {
        let s = format!("{prefix}URI:{kind}:{body}");
        let e = err(&s);
        assert_eq!(e, CapError::InconsistentPrefix { prefix, kind }, "{s}");
        let msg = e.to_string();
        assert!(msg.contains(prefix) && msg.contains(kind), "{msg}");
        assert!(!msg.contains(WK) && !msg.contains(RK), "{msg}");
    }
}

#[test]
fn only_one_prefix_is_stripped() {
    // Stock: after one prefix the rest must start with `URI:`, else the cap is unknown.
    for s in [
        format!("ro.ro.{CHK}"),
        format!("imm.ro.{CHK}"),
        format!("ro.imm.{CHK}"),
        format!("imm.imm.URI:SSK:{WK}:{FP}"),
    ] {
        assert_eq!(parse(&s), Cap::Unknown(s.clone()));
        assert_eq!(parse(&s).to_string(), s);
    }
}

#[test]
fn future_test_caps_follow_stock() {
    for s in [
        "x-tahoe-future-test-writeable:x",
        "x-tahoe-future-test-mutable:x",
        "ro.x-tahoe-future-test-mutable:x",
        "x-tahoe-future-anything",
    ] {
        assert_eq!(parse(s), Cap::Unknown(s.to_owned()));
    }
    assert_eq!(
        err("ro.x-tahoe-future-test-writeable:x"),
        CapError::InconsistentPrefix {
            prefix: "ro.",
            kind: "x-tahoe-future-test-writeable"
        }
    );
    assert_eq!(
        err("imm.x-tahoe-future-test-writeable:x"),
        CapError::InconsistentPrefix {
            prefix: "imm.",
            kind: "x-tahoe-future-test-writeable"
        }
    );
    assert_eq!(
        err("imm.x-tahoe-future-test-mutable:x"),
        CapError::InconsistentPrefix {
            prefix: "imm.",
            kind: "x-tahoe-future-test-mutable"
        }
    );
}

#[test]
fn unknown_caps_round_trip_verbatim() {
    for s in [
        "",
        "URI:",
        "URI:CHK",
        "URI:NEW-KIND:foo:bar",
        "ro.URI:NEW-KIND:foo",
        "imm.URI:NEW-KIND:foo",
        "uri:CHK:x",
        "URI:chk:x",
        "URI:DIR3:abc",
        "URI:CHK-RO:x",
        " URI:CHK:x",
        "x-tahoe-crazy-future:ünïcødé\n",
        "URI:LIT", // no colon after the kind
        "http://example.com/",
    ] {
        let c = parse(s);
        assert_eq!(c, Cap::Unknown(s.to_owned()), "{s:?}");
        assert_eq!(c.to_string(), s);
    }
}

#[test]
fn numbers_with_leading_zeros_are_accepted_and_dropped() {
    // Stock: int(b"03") == 3, printed back as "3".
    let ueb = "p5th2xpblm4deqn4evxkb32e3cauj53chncuwnigeqagspxmsczq";
    let c = parse(&format!(
        "URI:CHK:l6zwjsbrrtopphmwkisghpjwqy:{ueb}:03:0010:0000000000000000000000000056"
    ));
    assert_eq!(c.to_string(), CHK);
    assert_eq!(c.size(), Some(56));
    assert_eq!(
        parse(&format!("URI:CHK:l6zwjsbrrtopphmwkisghpjwqy:{ueb}:3:10:0")).size(),
        Some(0)
    );
}

#[test]
fn dir_cap_wraps_only_file_caps() {
    let file = parse(CHK);
    let d = DirCap::new(file.clone()).expect("a file cap wraps");
    assert_eq!(Cap::Dir(d.clone()).kind(), "DIR2-CHK");
    assert_eq!(d.filenode_cap(), &file);
    assert_eq!(d.clone().into_filenode_cap(), file);
    let dir = Cap::Dir(d);
    assert_eq!(DirCap::new(dir.clone()), Err(dir));
    let u = Cap::Unknown("URI:X:y".into());
    assert_eq!(DirCap::new(u.clone()), Err(u));
}

// ---------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------

const KEY: &str = "l6zwjsbrrtopphmwkisghpjwqy";
const UEB: &str = "p5th2xpblm4deqn4evxkb32e3cauj53chncuwnigeqagspxmsczq";

fn chk(tail: &str) -> String {
    format!("URI:CHK:{KEY}:{UEB}:{tail}")
}

#[test]
fn malformed_known_caps_are_errors() {
    use Base32Problem as P;
    use CapError as E;
    let non_canonical_key = format!("{}b", &KEY[..25]); // last char sets an unused bit
    let cases: Vec<(String, E, &str)> = vec![
        // field counts
        (
            "URI:CHK:".into(),
            E::FieldCount {
                kind: "CHK",
                expected: 5,
                exact: true,
                found: 0,
            },
            "expected 5",
        ),
        (
            chk("3:10"),
            E::FieldCount {
                kind: "CHK",
                expected: 5,
                exact: true,
                found: 4,
            },
            "found 4",
        ),
        (
            chk("3:10:56:7"),
            E::FieldCount {
                kind: "CHK",
                expected: 5,
                exact: true,
                found: 6,
            },
            "found 6",
        ),
        (
            format!("URI:CHK-Verifier:{KEY}:{UEB}:3:10:56:more"),
            E::FieldCount {
                kind: "CHK-Verifier",
                expected: 5,
                exact: true,
                found: 6,
            },
            "CHK-Verifier",
        ),
        (
            format!("URI:SSK:{WK}"),
            E::FieldCount {
                kind: "SSK",
                expected: 2,
                exact: true,
                found: 1,
            },
            "expected 2",
        ),
        (
            format!("URI:MDMF:{WK}"),
            E::FieldCount {
                kind: "MDMF",
                expected: 2,
                exact: false,
                found: 1,
            },
            "at least 2",
        ),
        (
            "URI:DIR2:".into(),
            E::FieldCount {
                kind: "DIR2",
                expected: 2,
                exact: true,
                found: 0,
            },
            "DIR2 cap",
        ),
        (
            "URI:DIR2-CHK:".into(),
            E::FieldCount {
                kind: "DIR2-CHK",
                expected: 5,
                exact: true,
                found: 0,
            },
            "DIR2-CHK cap",
        ),
        // empty fields
        (
            "URI:CHK:::::".into(),
            E::EmptyField {
                kind: "CHK",
                field: "key",
            },
            "key field is empty",
        ),
        (
            format!("URI:CHK:{KEY}:{UEB}::10:56"),
            E::EmptyField {
                kind: "CHK",
                field: "needed shares (k)",
            },
            "needed shares (k) field is empty",
        ),
        (
            chk("3:10:"),
            E::EmptyField {
                kind: "CHK",
                field: "size",
            },
            "size field is empty",
        ),
        (
            format!("URI:SSK:{WK}:"),
            E::EmptyField {
                kind: "SSK",
                field: "fingerprint",
            },
            "fingerprint",
        ),
        (
            format!("URI:MDMF-RO::{FP}"),
            E::EmptyField {
                kind: "MDMF-RO",
                field: "readkey",
            },
            "readkey",
        ),
        // base32
        (
            format!("URI:CHK:{}:{UEB}:3:10:56", KEY.to_uppercase()),
            E::Base32 {
                kind: "CHK",
                field: "key",
                problem: P::BadCharacter {
                    position: 0,
                    character: None,
                },
            },
            "invalid character at position 0",
        ),
        (
            format!("URI:CHK:{KEY}:{}1:3:10:56", &UEB[..51]),
            E::Base32 {
                kind: "CHK",
                field: "UEB hash",
                problem: P::BadCharacter {
                    position: 51,
                    character: Some('1'),
                },
            },
            "'1'",
        ),
        (
            format!("URI:CHK:{non_canonical_key}:{UEB}:3:10:56"),
            E::Base32 {
                kind: "CHK",
                field: "key",
                problem: P::NonCanonical,
            },
            "non-canonical",
        ),
        (
            format!("URI:CHK:{}:{UEB}:3:10:56", &KEY[..25]),
            E::Base32 {
                kind: "CHK",
                field: "key",
                problem: P::WrongLength {
                    expected: 26,
                    found: 25,
                },
            },
            "expected 26 characters, found 25",
        ),
        (
            format!("URI:SSK-Verifier:{SI}:{FP}a"),
            E::Base32 {
                kind: "SSK-Verifier",
                field: "fingerprint",
                problem: P::WrongLength {
                    expected: 52,
                    found: 53,
                },
            },
            "fingerprint",
        ),
        (
            format!("URI:SSK-Verifier:{SI}:{FP}\n"),
            E::Base32 {
                kind: "SSK-Verifier",
                field: "fingerprint",
                problem: P::WrongLength {
                    expected: 52,
                    found: 53,
                },
            },
            "fingerprint",
        ),
        (
            format!("URI:DIR2-Verifier:{}=:{FP}", &SI[..25]),
            E::Base32 {
                kind: "DIR2-Verifier",
                field: "storage index",
                problem: P::BadCharacter {
                    position: 25,
                    character: Some('='),
                },
            },
            "storage index",
        ),
        (
            "URI:LIT:ab".into(),
            E::Base32 {
                kind: "LIT",
                field: "data",
                problem: P::NonCanonical,
            },
            "non-canonical",
        ),
        (
            "URI:LIT:a".into(),
            E::Base32 {
                kind: "LIT",
                field: "data",
                problem: P::InvalidLength { found: 1 },
            },
            "invalid length (1 characters",
        ),
        (
            "URI:LIT:nbswy3dp:".into(),
            E::Base32 {
                kind: "LIT",
                field: "data",
                problem: P::BadCharacter {
                    position: 8,
                    character: None,
                },
            },
            "LIT cap: data field",
        ),
        (
            "URI:DIR2-LIT:NBSWY3DP".into(),
            E::Base32 {
                kind: "DIR2-LIT",
                field: "data",
                problem: P::BadCharacter {
                    position: 0,
                    character: None,
                },
            },
            "DIR2-LIT",
        ),
        // numbers
        (
            chk("3:10:56junk"),
            E::NotDecimal {
                kind: "CHK",
                field: "size",
                position: 2,
            },
            "size field is not a decimal number",
        ),
        (
            chk("3:10:56\n"),
            E::NotDecimal {
                kind: "CHK",
                field: "size",
                position: 2,
            },
            "size",
        ),
        (
            format!("URI:CHK-Verifier:{SI}:{UEB}:3:10:56junk"),
            E::NotDecimal {
                kind: "CHK-Verifier",
                field: "size",
                position: 2,
            },
            "size",
        ),
        (
            chk("3:10:+56"),
            E::NotDecimal {
                kind: "CHK",
                field: "size",
                position: 0,
            },
            "position 0",
        ),
        (
            chk("3:10:-1"),
            E::NotDecimal {
                kind: "CHK",
                field: "size",
                position: 0,
            },
            "size",
        ),
        (
            chk(" 3:10:56"),
            E::NotDecimal {
                kind: "CHK",
                field: "needed shares (k)",
                position: 0,
            },
            "needed shares",
        ),
        (
            chk("3:0x10:56"),
            E::NotDecimal {
                kind: "CHK",
                field: "total shares (N)",
                position: 1,
            },
            "total shares",
        ),
        (
            chk("3:10:٣"),
            E::NotDecimal {
                kind: "CHK",
                field: "size",
                position: 0,
            },
            "size",
        ),
        (
            chk("3:10:18446744073709551616"),
            E::NumberTooLarge {
                kind: "CHK",
                field: "size",
                max: u64::MAX,
            },
            "too large",
        ),
        (
            chk("3:10:999999999999999999999999999"),
            E::NumberTooLarge {
                kind: "CHK",
                field: "size",
                max: u64::MAX,
            },
            "size field is too large",
        ),
        (
            chk("3:65536:56"),
            E::NumberTooLarge {
                kind: "CHK",
                field: "total shares (N)",
                max: 256,
            },
            "at most 256",
        ),
        (
            chk("99999999999999999999999:10:56"),
            E::NumberTooLarge {
                kind: "CHK",
                field: "needed shares (k)",
                max: u64::MAX,
            },
            "too large",
        ),
        // share counts
        (
            chk("0:10:56"),
            E::NeededSharesZero { kind: "CHK" },
            "k) is 0",
        ),
        (
            chk("0:0:56"),
            E::NeededSharesZero { kind: "CHK" },
            "at least 1",
        ),
        (
            chk("3:0:56"),
            E::NeededExceedsTotal {
                kind: "CHK",
                needed: 3,
                total: 0,
            },
            "k=3) exceeds total shares (N=0)",
        ),
        (
            chk("11:10:56"),
            E::NeededExceedsTotal {
                kind: "CHK",
                needed: 11,
                total: 10,
            },
            "exceeds",
        ),
        (
            chk("3:257:56"),
            E::TooManyShares {
                kind: "CHK",
                total: 257,
            },
            "N) is 257",
        ),
        (
            chk("3:300:56"),
            E::TooManyShares {
                kind: "CHK",
                total: 300,
            },
            "at most 256",
        ),
        (
            format!("URI:DIR2-CHK-Verifier:{SI}:{UEB}:4:3:56"),
            E::NeededExceedsTotal {
                kind: "DIR2-CHK-Verifier",
                needed: 4,
                total: 3,
            },
            "DIR2-CHK-Verifier cap",
        ),
    ];
    for (s, expected, fragment) in cases {
        let e = err(&s);
        assert_eq!(e, expected, "{s:?}");
        let msg = e.to_string();
        assert!(msg.contains(fragment), "{s:?}: {msg:?} lacks {fragment:?}");
        assert!(!msg.contains('\n'), "one-line message: {msg:?}");
    }
}

#[test]
fn the_max_share_counts_are_accepted() {
    let c = parse(&chk("256:256:56"));
    assert_eq!(
        (c.needed_shares(), c.total_shares()),
        (Some(256), Some(256))
    );
    let c = parse(&chk("1:256:56"));
    assert_eq!((c.needed_shares(), c.total_shares()), (Some(1), Some(256)));
}

#[test]
fn errors_never_quote_secrets() {
    // A write cap with a broken fingerprint, an uppercased key, a key with one bad char.
    let secret = "zlnpn42lu7xedonux53kr42hsm";
    let upper = secret.to_uppercase();
    let cases = [
        format!("URI:SSK:{secret}:{FP}x"),
        format!("URI:SSK:{upper}:{FP}"),
        format!("URI:SSK-RO:{}Q:{FP}", &secret[..25]),
        format!("URI:DIR2-MDMF:{secret}"),
        format!("URI:CHK:{secret}:{UEB}:11:10:5"),
        format!("URI:CHK:{upper}:{UEB}:3:10:5"),
        format!("ro.URI:SSK:{secret}:{FP}"),
        format!("URI:LIT:{}Q", &secret[..23]),
    ];
    for s in cases {
        let e = err(&s);
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(secret), "{text}");
            assert!(!text.contains(&upper), "{text}");
            assert!(!text.contains(&secret[..10]), "{text}");
            assert!(!text.contains("'Q'") && !text.contains("'Z'"), "{text}");
        }
    }
}

#[test]
fn debug_never_shows_secrets() {
    let caps = [
        parse(&format!("URI:SSK:{WK}:{FP}")),
        parse(&format!("URI:SSK-RO:{RK}:{FP}")),
        parse(&format!("URI:MDMF:{WK}:{FP}")),
        parse(&format!("URI:MDMF-RO:{RK}:{FP}")),
        parse(&format!("URI:DIR2:{WK}:{FP}")),
        parse(&format!("URI:DIR2-MDMF-RO:{RK}:{FP}")),
        parse(CHK),
        parse(&format!("URI:DIR2-CHK:{}", &CHK["URI:CHK:".len()..])),
        parse("URI:LIT:nbswy3dp"),
        parse("URI:DIR2-LIT:nbswy3dp"),
    ];
    for c in &caps {
        let d = format!("{c:?}");
        let alt = format!("{c:#?}");
        for text in [&d, &alt] {
            for secret in [WK, RK, KEY, "nbswy3dp", "hello", "[104, 101"] {
                assert!(!text.contains(secret), "{text} shows {secret}");
            }
        }
        if let Some(si) = c.storage_index() {
            assert!(d.contains(&base32::encode(&si)), "{d} should show the SI");
        }
    }
    // Raw key bytes are not printed either (writekey bytes 0..16 would show as "0, 1, 2").
    let w = parse(&format!("URI:SSK:{WK}:{FP}"));
    assert!(!format!("{w:?}").contains("0, 1, 2"));
    // Unknown caps show only a label and a length.
    let u = parse("URI:NEW-KIND:supersecretstuff");
    let d = format!("{u:?}");
    assert!(
        d.contains("URI:NEW-KIND") && !d.contains("supersecret"),
        "{d}"
    );
    let u = parse("mysecretkey:more");
    assert!(!format!("{u:?}").contains("mysecret"));
    let u = parse("ro.x-tahoe-future-foo:secretpart");
    let d = format!("{u:?}");
    assert!(
        d.contains("ro.x-tahoe-future-foo") && !d.contains("secretpart"),
        "{d}"
    );
}

#[test]
fn struct_helpers_agree_with_cap_methods() {
    let Cap::Ssk(w) = parse(&format!("URI:SSK:{WK}:{FP}")) else {
        panic!()
    };
    assert_eq!(base32::encode(&w.readkey()), RK);
    assert_eq!(base32::encode(&w.storage_index()), SI);
    let r = w.readonly();
    assert_eq!(r.verifier(), w.verifier());
    assert_eq!(base32::encode(&r.storage_index()), SI);
    assert_eq!(
        LitCap {
            data: vec![1, 2, 3]
        }
        .size(),
        3
    );
}

// ---------------------------------------------------------------------------------------
// Property tests.
// ---------------------------------------------------------------------------------------

fn share_counts() -> impl Strategy<Value = (u16, u16)> {
    (1u16..=256).prop_flat_map(|n| (1..=n, Just(n)))
}

fn file_cap() -> impl Strategy<Value = Cap> {
    let chk = (
        any::<[u8; 16]>(),
        any::<[u8; 32]>(),
        share_counts(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(key, ueb_hash, (k, n), size, verifier)| {
            let c = ChkCap {
                key,
                ueb_hash,
                needed_shares: k,
                total_shares: n,
                size,
            };
            if verifier {
                Cap::ChkVerifier(c.verifier())
            } else {
                Cap::Chk(c)
            }
        });
    let mutable = (any::<[u8; 16]>(), any::<[u8; 32]>(), 0u8..6).prop_map(|(key, fp, which)| {
        let w = MutableWriteCap {
            writekey: key,
            fingerprint: fp,
        };
        let r = MutableReadCap {
            readkey: key,
            fingerprint: fp,
        };
        let v = MutableVerifierCap {
            storage_index: key,
            fingerprint: fp,
        };
        match which {
            0 => Cap::Ssk(w),
            1 => Cap::SskRo(r),
            2 => Cap::SskVerifier(v),
            3 => Cap::Mdmf(w),
            4 => Cap::MdmfRo(r),
            _ => Cap::MdmfVerifier(v),
        }
    });
    let lit =
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(|data| Cap::Lit(LitCap { data }));
    prop_oneof![chk, mutable, lit]
}

fn any_valid_cap() -> impl Strategy<Value = Cap> {
    (file_cap(), any::<bool>()).prop_map(|(c, dir)| {
        if dir {
            Cap::Dir(DirCap::new(c).expect("file cap"))
        } else {
            c
        }
    })
}

/// Any string that parses must print back to a string that parses to the same cap.
fn check_parse_is_stable(s: &str) {
    if let Ok(c) = s.parse::<Cap>() {
        let printed = c.to_string();
        let again: Cap = printed.parse().expect("canonical output parses");
        assert_eq!(again, c);
        assert_eq!(again.to_string(), printed);
        if let Cap::Unknown(u) = &c {
            assert_eq!(u, s);
        }
        let _ = (
            c.kind(),
            c.storage_index(),
            c.readonly(),
            c.verifier(),
            format!("{c:?}"),
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_caps_round_trip(cap in any_valid_cap()) {
        let s = cap.to_string();
        let parsed: Cap = s.parse().expect("valid cap parses");
        prop_assert_eq!(&parsed, &cap);
        prop_assert_eq!(parsed.to_string(), s.clone());
        let head = format!("URI:{}:", cap.kind());
        prop_assert!(s.starts_with(&head));
        // Consistent prefixes are accepted and dropped.
        let with_ro = format!("ro.{s}").parse::<Cap>();
        if cap.is_readonly() {
            prop_assert_eq!(with_ro.expect("ro. ok"), cap.clone());
        } else {
            prop_assert!(with_ro.is_err());
        }
        let with_imm = format!("imm.{s}").parse::<Cap>();
        if !cap.is_mutable() {
            prop_assert_eq!(with_imm.expect("imm. ok"), cap.clone());
        } else {
            prop_assert!(with_imm.is_err());
        }
        // Diminishing keeps the storage index and ends in fixed points.
        let ro = cap.readonly().expect("known caps have a read-only form");
        prop_assert!(ro.is_readonly());
        prop_assert_eq!(ro.storage_index(), cap.storage_index());
        prop_assert_eq!(ro.readonly(), Some(ro.clone()));
        prop_assert_eq!(ro.kind().starts_with("DIR2"), cap.is_directory());
        match cap.verifier() {
            Some(v) => {
                prop_assert_eq!(v.storage_index(), cap.storage_index());
                prop_assert_eq!(v.verifier(), Some(v.clone()));
                prop_assert_eq!(ro.verifier(), Some(v.clone()));
                prop_assert!(v.is_verifier() && v.is_readonly() && !v.is_mutable());
                prop_assert_eq!(v.to_string().parse::<Cap>().expect("verifier parses"), v);
            }
            None => prop_assert!(cap.kind().ends_with("LIT")),
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        check_parse_is_stable(&s);
    }

    #[test]
    fn cap_like_strings_never_panic(
        prefix in prop::sample::select(vec![
            "", "ro.", "imm.", "ro.ro.",
        ]),
        kind in prop::sample::select(vec![
            "LIT", "CHK", "CHK-Verifier", "SSK", "SSK-RO", "SSK-Verifier", "MDMF", "MDMF-RO",
            "MDMF-Verifier", "DIR2", "DIR2-RO", "DIR2-Verifier", "DIR2-CHK",
            "DIR2-CHK-Verifier", "DIR2-LIT", "DIR2-MDMF", "DIR2-MDMF-RO",
            "DIR2-MDMF-Verifier", "NEW",
        ]),
        parts in proptest::collection::vec("[a-z2-7]{0,60}|[0-9]{0,25}|[A-Z01=+ \n:é-]{0,4}", 0..8),
    ) {
        let s = format!("{prefix}URI:{kind}:{}", parts.join(":"));
        check_parse_is_stable(&s);
    }

    #[test]
    fn chk_with_random_numbers_never_panics(
        k in "[0-9]{0,30}", n in "[0-9]{0,30}", size in "[0-9+-]{0,30}",
    ) {
        let s = chk(&format!("{k}:{n}:{size}"));
        check_parse_is_stable(&s);
        if let Ok(Cap::Chk(c)) = s.parse::<Cap>() {
            prop_assert!(c.needed_shares >= 1);
            prop_assert!(c.needed_shares <= c.total_shares);
            prop_assert!(c.total_shares <= MAX_SHARES);
        }
    }

    #[test]
    fn mutated_valid_caps_never_panic(
        cap in any_valid_cap(), pos in any::<prop::sample::Index>(), ch in any::<char>(),
        delete in any::<bool>(),
    ) {
        let mut s: Vec<char> = cap.to_string().chars().collect();
        let i = pos.index(s.len());
        if delete { s.remove(i); } else { s[i] = ch; }
        let s: String = s.into_iter().collect();
        check_parse_is_stable(&s);
    }
}
