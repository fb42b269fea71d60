//! Handing freed memory back to the operating system at the moments it matters.

/// Returns the memory freed so far to the operating system now. The binary's allocator
/// (mimalloc, `main.rs`) keeps freed pages resident for a while so that the next training
/// step reuses them without page faults; that is what makes training fast (with no delay,
/// `flm bench train --device cpu` ran 35% slower). Right after a corpus-sized buffer is
/// dropped, though, those pages would stay in the peak while the next big buffer (the token
/// ids) is filled. Under any other allocator this only walks mimalloc's own, empty heaps.
pub fn release_freed_memory() {
    // SAFETY: `mi_collect` has no preconditions and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
