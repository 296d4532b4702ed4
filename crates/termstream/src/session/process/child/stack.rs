//! The stacks children run on until `execve`, kept for the next spawn.
//!
//! A child made with `CLONE_VM | CLONE_VFORK` runs on a stack of its own
//! inside the server's memory (see [`super`]). Mapping one per spawn
//! (`mmap`, `mprotect` for the guard page, page faults as the child touches
//! it) and unmapping it once the clone returned was about 1 % of the
//! server's CPU while opening sessions (`munmap` alone 0.9 % in `perf`):
//! `munmap` in a process with many threads sends every other CPU that ran
//! one of them an interrupt to flush its TLB, and waits for them. So a
//! stack is kept in a small pool ([`POOL`]) once its clone returned (the
//! child called `execve` or exited, and left it), for the next spawn, and
//! only a stack given back to a full pool is unmapped.
//!
//! Safety rests on ownership: [`Pool::take`] moves a stack out of the pool,
//! so no two spawns hold the same one, and a spawn gives it back
//! ([`Pool::give_back`]) only after its `clone` returned, which with
//! `CLONE_VFORK` is after the child's `execve` or exit: nothing runs on a
//! stack in the pool. The pool's lock is taken by the parent only, never
//! by a child (which may take no lock). What a child left on a stack is the
//! server's own memory, and the next child overwrites what it uses.

use std::io;
use std::sync::Mutex;

/// The child's stack until `execve`: it runs a few system calls (and
/// possibly the dynamic linker's lazy binding of them), far below this.
pub(super) const STACK_SIZE: usize = 64 * 1024;

/// How many stacks the pool keeps: more than the spawns that usually run
/// at once (one per thread creating a session: the server's workers, one
/// per CPU), few enough that the memory kept is small (a stack is 68 KiB
/// of address space, and only the pages its children touched are
/// resident). A spawn past them maps a stack of its own, unmapped when
/// given back to a full pool.
const KEPT: usize = 8;

/// The stacks of every spawn of the server.
pub(super) static POOL: Pool = Pool::new(KEPT);

/// The stack a child runs on: [`STACK_SIZE`] bytes mapped for it alone,
/// above a `PROT_NONE` guard page, unmapped when dropped. Whoever holds the
/// value holds the stack: it is never copied.
pub(super) struct ChildStack {
    /// The start of the mapping: the guard page.
    base: *mut std::ffi::c_void,
    /// The size of the mapping: the guard page and the stack.
    len: usize,
}

// SAFETY: the value owns its mapping, which nothing else points into; it
// may be unmapped or used from any thread.
unsafe impl Send for ChildStack {}

impl ChildStack {
    /// Maps a new stack, with its guard page.
    pub(super) fn new() -> io::Result<ChildStack> {
        let page = rustix::param::page_size();
        let len = STACK_SIZE.next_multiple_of(page) + page;
        // SAFETY: a new anonymous mapping, at an address the kernel picks.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::STACK | rustix::mm::MapFlags::NORESERVE,
            )
        }?;
        let stack = ChildStack { base, len };
        // SAFETY: the lowest page of the mapping made above, which nothing
        // uses.
        unsafe { rustix::mm::mprotect(base, page, rustix::mm::MprotectFlags::empty()) }?;
        Ok(stack)
    }

    /// The usable stack, above the guard page.
    pub(super) fn slice(&mut self) -> &mut [u8] {
        let page = rustix::param::page_size();
        // SAFETY: the mapping above the guard page is readable and
        // writable, ours alone, and lives as long as `self`.
        unsafe { std::slice::from_raw_parts_mut(self.base.cast::<u8>().add(page), self.len - page) }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made; no child runs on it any more (a
        // stack is dropped only by whoever holds it, after the clone that
        // used it returned, or unused).
        let _ = unsafe { rustix::mm::munmap(self.base, self.len) };
    }
}

/// Stacks no child runs on, ready for the next spawn.
pub(super) struct Pool {
    /// At most `max`; taken from and given back to by spawning threads.
    stacks: Mutex<Vec<ChildStack>>,
    max: usize,
}

impl Pool {
    pub(super) const fn new(max: usize) -> Pool {
        Pool {
            stacks: Mutex::new(Vec::new()),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ChildStack>> {
        // A push or a pop cannot leave the list half changed: poison is
        // ignored.
        self.stacks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A stack for one spawn: one kept, or a new one when none is.
    pub(super) fn take(&self) -> io::Result<ChildStack> {
        let kept = self.lock().pop();
        match kept {
            Some(stack) => Ok(stack),
            None => ChildStack::new(),
        }
    }

    /// Keeps `stack` for the next spawn, or unmaps it when the pool is
    /// full. Only once the clone that ran a child on it has returned.
    pub(super) fn give_back(&self, stack: ChildStack) {
        let mut stacks = self.lock();
        if stacks.len() < self.max {
            stacks.push(stack);
            return;
        }
        // Unmapped outside the lock: other spawns need not wait for it.
        drop(stacks);
        drop(stack);
    }

    /// How many stacks are kept.
    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        self.lock().len()
    }

    /// Where the kept stacks are mapped.
    #[cfg(test)]
    pub(super) fn kept_at(&self) -> Vec<usize> {
        self.lock().iter().map(|s| s.base as usize).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;

    fn base(stack: &mut ChildStack) -> usize {
        stack.slice().as_ptr() as usize
    }

    #[test]
    fn a_pool_keeps_at_most_its_bound_and_hands_kept_stacks_out_again() {
        let pool = Pool::new(2);
        let mut lent: Vec<ChildStack> = (0..3).map(|_| pool.take().unwrap()).collect();
        let bases: HashSet<usize> = lent.iter_mut().map(base).collect();
        assert_eq!(bases.len(), 3, "one stack lent twice");
        for stack in lent {
            pool.give_back(stack);
        }
        assert_eq!(pool.kept(), 2, "the pool is not bounded");
        let mut again: Vec<ChildStack> = (0..2).map(|_| pool.take().unwrap()).collect();
        let again_bases: HashSet<usize> = again.iter_mut().map(base).collect();
        assert_eq!(again_bases.len(), 2, "one kept stack lent twice");
        assert!(again_bases.is_subset(&bases), "kept stacks were not reused");
        assert_eq!(pool.kept(), 0);
    }

    /// Threads taking and giving back stacks at once never hold the same
    /// one: each writes its mark over its stack, and finds it there
    /// unchanged before giving it back.
    #[test]
    fn no_stack_is_held_by_two_takers_at_once() {
        let pool = Arc::new(Pool::new(3));
        let held = Arc::new(Mutex::new(HashSet::new()));
        let threads: Vec<_> = (0..6u8)
            .map(|mark| {
                let (pool, held) = (pool.clone(), held.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let mut stack = pool.take().unwrap();
                        let at = base(&mut stack);
                        assert!(held.lock().unwrap().insert(at), "a stack lent twice at once");
                        let slice = stack.slice();
                        let ends = [0, slice.len() / 2, slice.len() - 1];
                        for i in ends {
                            slice[i] = mark;
                        }
                        std::thread::yield_now();
                        assert!(ends.iter().all(|&i| slice[i] == mark), "a stack written by another");
                        held.lock().unwrap().remove(&at);
                        pool.give_back(stack);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(pool.kept() <= 3);
    }
}
