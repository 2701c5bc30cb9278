//! zfec-compatible erasure coding (placeholder; being written).
