//! Helpers for this crate's unit tests.

use std::os::unix::fs::PermissionsExt;

/// Linux capability numbers that let a process ignore file permissions.
const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_FOWNER: u32 = 3;
const CAP_VERSION_3: u32 = 0x2008_0522;

/// Runs `f` on a thread of its own that cannot override file permissions,
/// as a worker run by an ordinary user: when the tests run as root (in a
/// container, say), the thread gives up the capabilities that ignore
/// permission bits, for itself and for every program it execs.
/// Capabilities are per thread on Linux, so the rest of the test process
/// keeps them. Panics if the thread could still write into a read-only
/// directory, so a test relying on permissions cannot pass vacuously.
pub(crate) fn as_unprivileged<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                drop_file_capabilities();
                check_permissions_hold();
                f()
            })
            .join()
            .expect("the unprivileged thread panicked")
    })
}

fn drop_file_capabilities() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let caps = [CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER];
    for cap in caps {
        // From the bounding set, so an exec'd root program cannot regain
        // them. Fails (EPERM) when we do not hold them anyway.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    }
    let mut header = Header {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: header and data are the layout capget/capset expect (v3:
    // two data structs); pid 0 is the calling thread.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) == 0 {
            let mask = caps.iter().fold(u32::MAX, |mask, cap| mask & !(1 << cap));
            data[0].effective &= mask;
            data[0].permitted &= mask;
            libc::syscall(libc::SYS_capset, &mut header, data.as_ptr());
        }
    }
}

fn check_permissions_hold() {
    let dir = tempfile::tempdir().unwrap();
    let sealed = dir.path().join("sealed");
    std::fs::create_dir(&sealed).unwrap();
    std::fs::set_permissions(&sealed, std::fs::Permissions::from_mode(0o555)).unwrap();
    let denied = std::fs::write(sealed.join("probe"), b"x").is_err();
    std::fs::set_permissions(&sealed, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        denied,
        "this thread can still write into a read-only directory; cannot test permissions"
    );
}
