//! Deliberate misbehaviours, shared by the HTTP and message handlers.

use std::hint::black_box;

/// Traps.
pub fn trap() -> ! {
    panic!("boom")
}

/// Spins forever; `black_box` keeps the compiler from proving the loop pointless.
pub fn spin() -> ! {
    let mut n = 0_u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks forever, writing to every page so each one is really committed,
/// until the host's memory limit makes the allocation (and so the instance) fail.
pub fn memory_bomb() -> ! {
    const CHUNK: usize = 1 << 20;
    let mut chunks = Vec::new();
    loop {
        let mut chunk = vec![0_u8; CHUNK];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        chunks.push(black_box(chunk));
    }
}

/// A `String` holding invalid UTF-8, which the canonical ABI must refuse when the host lifts
/// it. Nothing else in the plugins may do this; here it is the point of the exercise.
#[allow(unsafe_code)]
pub fn invalid_utf8() -> String {
    // SAFETY: deliberately violated. The string is never read as `str` on this side; it is only
    // handed to the host, whose rejection is what the test checks.
    unsafe { String::from_utf8_unchecked(vec![0xff, 0xfe]) }
}
