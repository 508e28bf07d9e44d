//! How SQLite plans Herald's statements: without looking at bound values.
//!
//! SQLite (3.53, bundled) reads the value bound to `LIMIT ?` while it plans a statement, and
//! marks the statement to be planned again whenever that parameter is bound anew. Diesel
//! binds every parameter on every execution, so each cached statement with a limit (a
//! user's rooms, history and replay pages, blockers, held notifications) was parsed and
//! planned again at each use: `sqlite3Reprepare` was 5–8 % of the server's CPU while
//! clients connected (docs/benchmarks.md). The query planner stability guarantee (QPSG)
//! plans without bound values, so a cached statement stays prepared. Herald's queries
//! lose nothing by it: their one `LIKE` is case-insensitive on a BINARY column, which
//! SQLite never turns into an index range whatever the pattern.
//!
//! QPSG is a per-connection setting that Diesel does not expose; an auto-extension turns
//! it on in every SQLite connection this process opens.

use std::ffi::{c_char, c_int};
use std::sync::Once;

use libsqlite3_sys as ffi;

/// Turns QPSG on for every SQLite connection opened from now on (idempotent).
pub fn plan_without_bound_values() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: `enable` has the entry-point signature SQLite calls auto-extensions with,
        // and lives for the whole process.
        let rc = unsafe { ffi::sqlite3_auto_extension(Some(enable)) };
        if rc != ffi::SQLITE_OK {
            log::warn!("SQLite auto-extension not installed ({rc}): statements with a bound LIMIT are planned again at each use");
        }
    });
}

/// Called by SQLite for each new connection, before it is handed out.
unsafe extern "C" fn enable(
    db: *mut ffi::sqlite3,
    _err: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: `db` is the connection being opened; ENABLE_QPSG takes an int and an optional
    // int pointer for the resulting setting.
    unsafe {
        ffi::sqlite3_db_config(
            db,
            ffi::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as c_int,
            std::ptr::null_mut::<c_int>(),
        );
    }
    ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    /// A statement with `LIMIT ?` run twice with the limit bound anew is not prepared again.
    #[test]
    fn a_statement_with_a_bound_limit_is_not_planned_again_when_rebound() {
        plan_without_bound_values();
        // SAFETY: plain use of the SQLite C API on a private in-memory database; every
        // pointer passed is valid for the call.
        unsafe {
            let mut db = std::ptr::null_mut();
            let name = CString::new(":memory:").unwrap();
            assert_eq!(ffi::sqlite3_open(name.as_ptr(), &mut db), ffi::SQLITE_OK);
            let mut on: c_int = -1;
            ffi::sqlite3_db_config(db, ffi::SQLITE_DBCONFIG_ENABLE_QPSG, -1 as c_int, &mut on);
            assert_eq!(on, 1, "QPSG is on in a newly opened connection");
            let setup = CString::new(
                "CREATE TABLE t (a TEXT, b INT); CREATE INDEX t_a ON t (a); \
                 INSERT INTO t VALUES ('x', 1), ('x', 2), ('y', 3);",
            )
            .unwrap();
            let rc = ffi::sqlite3_exec(
                db,
                setup.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            assert_eq!(rc, ffi::SQLITE_OK);
            let sql = CString::new("SELECT b FROM t WHERE a = ?1 ORDER BY b LIMIT ?2").unwrap();
            let mut stmt = std::ptr::null_mut();
            let rc = ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr(),
                -1,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                std::ptr::null_mut(),
            );
            assert_eq!(rc, ffi::SQLITE_OK);
            let x = CString::new("x").unwrap();
            for limit in [1, 2, 1] {
                ffi::sqlite3_reset(stmt);
                ffi::sqlite3_bind_text(stmt, 1, x.as_ptr(), 1, ffi::SQLITE_TRANSIENT());
                ffi::sqlite3_bind_int(stmt, 2, limit);
                let mut rows = 0;
                while ffi::sqlite3_step(stmt) == ffi::SQLITE_ROW {
                    rows += 1;
                }
                assert_eq!(rows, limit);
            }
            let reprepared = ffi::sqlite3_stmt_status(stmt, ffi::SQLITE_STMTSTATUS_REPREPARE, 0);
            ffi::sqlite3_finalize(stmt);
            ffi::sqlite3_close(db);
            assert_eq!(
                reprepared, 0,
                "the statement was planned again after a rebind"
            );
        }
    }
}
