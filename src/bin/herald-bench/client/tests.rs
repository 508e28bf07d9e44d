//! Unit tests of the bench client's base64 and close-code parsing.
use super::driver::describe_close;
use super::handshake::base64;
use super::*;

#[test]
fn base64_matches_rfc4648() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    // The RFC 6455 example nonce.
    assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
}

#[test]
fn close_codes() {
    assert_eq!(close_code(Some(&[0x0f, 0xa8, b'x'])), Some(4008));
    assert_eq!(close_code(Some(&[3])), None);
    assert_eq!(describe_close(None), "no close code");
}
