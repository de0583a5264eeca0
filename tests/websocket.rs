//! WebSocket through the proxy: the `Upgrade` handshake reaches the origin and its `101`
//! reaches the client untouched, then frames flow both ways (an echo origin).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Origin, Proxy};

/// One frame: (opcode, payload). Client frames are masked, server frames are not.
fn read_frame(s: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let opcode = h[0] & 0x0f;
    let masked = h[1] & 0x80 != 0;
    let mut len = u64::from(h[1] & 0x7f);
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b)?;
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b)?;
        len = u64::from_be_bytes(b);
    }
    let mut mask = [0u8; 4];
    if masked {
        s.read_exact(&mut mask)?;
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload)?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok((opcode, payload))
}

fn write_frame(s: &mut impl Write, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let mut out = vec![0x80 | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    s.write_all(&out).unwrap();
}

/// An origin that accepts the WebSocket handshake and echoes every data frame.
fn echo_origin() -> Origin {
    Origin::start(|req, s| {
        let upgrade = req.header("upgrade").unwrap_or("");
        if !upgrade.eq_ignore_ascii_case("websocket") {
            let _ = s.write_all(&common::http_response(
                "400 Bad Request",
                &[],
                b"no upgrade",
            ));
            return;
        }
        // The accept value is the origin's business; the test checks it arrives unchanged.
        let accept = format!(
            "accept-for-{}",
            req.header("sec-websocket-key").unwrap_or("")
        );
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        while let Ok((opcode, payload)) = read_frame(s) {
            write_frame(s, opcode, &payload, None);
            if opcode == 0x8 {
                return;
            }
        }
    })
}

#[test]
fn websocket_echo_passes_through() {
    let origin = echo_origin();
    let p = Proxy::start(&origin.addr, "");
    let mut s = TcpStream::connect(&p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: test.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAccept: text/html\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let r = common::parse_response(&head, true);
    assert_eq!(r.status, 101, "{}", String::from_utf8_lossy(&head));
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("accept-for-dGhlIHNhbXBsZSBub25jZQ==")
    );
    let seen = origin.last_request();
    assert_eq!(seen.path, "/chat");
    assert_eq!(seen.header("sec-websocket-version"), Some("13"));

    let mask = Some([0x12, 0x34, 0x56, 0x78]);
    write_frame(&mut s, 0x1, b"hello through smproxy", mask);
    assert_eq!(
        read_frame(&mut s).unwrap(),
        (0x1, b"hello through smproxy".to_vec())
    );
    // A frame with an extended length, binary, with bytes that look like HTML.
    let big: Vec<u8> = b"</head><script>_smid</script>"
        .iter()
        .cycle()
        .take(70_000)
        .copied()
        .collect();
    write_frame(&mut s, 0x2, &big, mask);
    assert_eq!(read_frame(&mut s).unwrap(), (0x2, big));
    write_frame(&mut s, 0x8, &[0x03, 0xe8], mask);
    assert_eq!(read_frame(&mut s).unwrap(), (0x8, vec![0x03, 0xe8]));
}
