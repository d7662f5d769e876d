//! Lets gRPC clients that name the unix socket in `:authority` reach the plugin.
//!
//! grpcio (Python's gRPC) sends the socket path as the `:authority` of a `unix:` target,
//! percent-encoded by newer versions (`%2Ftmp%2F...%2Fplugin.sock`), raw by older ones. Neither
//! is a valid URI authority, and h2 (under hyper and tonic) answers such a request with
//! RST_STREAM PROTOCOL_ERROR, with no option to relax it. go-plugin's client sends `unused` and
//! passes. So every accepted unix-socket connection is wrapped in [`AcceptAnyAuthority`]: it
//! reads the client's HTTP/2 frames and replaces an `:authority` that is not a valid authority
//! with `localhost`, leaving valid ones alone. The server's answers pass through untouched.
//!
//! Rewriting a value means re-encoding its header block, and HPACK is stateful: every block
//! is decoded with a decoder that follows the client's dynamic table, then re-encoded with
//! literals only (no Huffman, no indexing), so the table h2 keeps for this connection stays
//! empty and agrees with ours whatever the client does. Every other frame, and the connection
//! preface, is copied byte for byte. Anything we cannot follow (a broken header block, a
//! block over [`MAX_BLOCK`]) closes the connection, as h2 would on such a connection error.

use loona_hpack::Decoder;
use loona_hpack::encoder::encode_integer_into;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// What a client's connection starts with (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEAD: usize = 9;

const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;

const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Every HTTP/2 peer accepts frames of this size (SETTINGS_MAX_FRAME_SIZE's floor), so the
/// re-encoded blocks are cut to it whatever the server announced.
const MAX_FRAME: usize = 16 << 10;
/// The most a header block may take compressed, and decoded (HPACK's size: name + value + 32
/// per field). The server refuses far less (hyper's default header list limit is 16 KiB);
/// these only bound what a hostile local client can make us buffer.
pub const MAX_BLOCK: usize = 1 << 20;
/// The largest dynamic table a client may ask for: SETTINGS_HEADER_TABLE_SIZE's default,
/// which our server (tonic, not configured otherwise) never raises.
const MAX_TABLE: usize = 4096;
/// What an invalid `:authority` becomes. Our services never read it.
const REPLACEMENT: &[u8] = b"localhost";

/// The client-to-server byte stream of one connection, with invalid `:authority` values
/// replaced. Fed the bytes as they arrive; writes what the server should read.
pub struct AuthorityRewriter {
    state: State,
    /// The frame header being read.
    head: Vec<u8>,
    /// The payload of the HEADERS / PUSH_PROMISE / CONTINUATION frame being read.
    payload: Vec<u8>,
    /// A header block still waiting for its CONTINUATION frames.
    block: Option<Block>,
    decoder: Decoder<'static>,
    /// Whether a replacement was logged yet (once per connection is enough).
    logged: bool,
}

enum State {
    /// How many bytes of the preface have been seen.
    Preface(usize),
    Head,
    /// Copying a frame's payload; how many bytes are left.
    Copy(usize),
    /// Reading a header-carrying frame's payload.
    Payload(Frame),
    /// Not HTTP/2 with prior knowledge: everything passes, and the server says what is wrong.
    Raw,
}

#[derive(Clone, Copy)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    len: usize,
}

/// One header block: the frame that opened it and its fragments so far.
struct Block {
    kind: u8,
    flags: u8,
    stream: u32,
    /// What sits between the padding length and the fragment: the priority of a HEADERS
    /// frame, the promised stream of a PUSH_PROMISE.
    prefix: Vec<u8>,
    fragment: Vec<u8>,
}

fn broken(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Default for AuthorityRewriter {
    fn default() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(MAX_TABLE);
        AuthorityRewriter {
            state: State::Preface(0),
            head: Vec::with_capacity(FRAME_HEAD),
            payload: Vec::new(),
            block: None,
            decoder,
            logged: false,
        }
    }
}

impl AuthorityRewriter {
    /// Takes the next bytes from the client; appends what the server should read to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        while !input.is_empty() {
            let used = match self.state {
                State::Preface(seen) => self.take_preface(seen, input, out),
                State::Head => self.take_head(input, out)?,
                State::Copy(left) => {
                    let n = left.min(input.len());
                    out.extend_from_slice(&input[..n]);
                    self.state = if n == left {
                        State::Head
                    } else {
                        State::Copy(left - n)
                    };
                    n
                }
                State::Payload(frame) => self.take_payload(frame, input, out)?,
                State::Raw => {
                    out.extend_from_slice(input);
                    input.len()
                }
            };
            input = &input[used..];
        }
        Ok(())
    }

    fn take_preface(&mut self, seen: usize, input: &[u8], out: &mut Vec<u8>) -> usize {
        let n = (PREFACE.len() - seen).min(input.len());
        if input[..n] != PREFACE[seen..seen + n] {
            // What matched is already out: from here on h2 gets the client's bytes as they
            // are, and refuses what is not HTTP/2.
            self.state = State::Raw;
            return 0;
        }
        out.extend_from_slice(&input[..n]);
        self.state = if seen + n == PREFACE.len() {
            State::Head
        } else {
            State::Preface(seen + n)
        };
        n
    }

    fn take_head(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
        let n = (FRAME_HEAD - self.head.len()).min(input.len());
        self.head.extend_from_slice(&input[..n]);
        if self.head.len() == FRAME_HEAD {
            let mut h = [0u8; FRAME_HEAD];
            h.copy_from_slice(&self.head);
            self.head.clear();
            let frame = Frame {
                len: u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize,
                kind: h[3],
                flags: h[4],
                stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
            };
            self.start_frame(frame, &h, out)?;
        }
        Ok(n)
    }

    fn start_frame(&mut self, frame: Frame, head: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let carries_headers = matches!(frame.kind, HEADERS | PUSH_PROMISE | CONTINUATION);
        match (&self.block, frame.kind) {
            (Some(b), CONTINUATION) if b.stream == frame.stream => {}
            (Some(b), _) => {
                return Err(broken(format!(
                    "a header block on stream {} was interrupted by a frame of type {:#x}",
                    b.stream, frame.kind
                )));
            }
            (None, CONTINUATION) => {
                return Err(broken("a CONTINUATION frame outside a header block"));
            }
            (None, _) => {}
        }
        if !carries_headers {
            out.extend_from_slice(head);
            self.state = if frame.len == 0 {
                State::Head
            } else {
                State::Copy(frame.len)
            };
            return Ok(());
        }
        let so_far = self.block.as_ref().map_or(0, |b| b.fragment.len());
        if so_far + frame.len > MAX_BLOCK {
            return Err(broken(format!(
                "a header block larger than {MAX_BLOCK} bytes on stream {}",
                frame.stream
            )));
        }
        self.payload.clear();
        self.state = State::Payload(frame);
        if frame.len == 0 {
            self.finish_frame(frame, out)?;
        }
        Ok(())
    }

    fn take_payload(&mut self, frame: Frame, input: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
        let n = (frame.len - self.payload.len()).min(input.len());
        self.payload.extend_from_slice(&input[..n]);
        if self.payload.len() == frame.len {
            self.finish_frame(frame, out)?;
        }
        Ok(n)
    }

    /// A header-carrying frame is complete: add it to its block, and at the block's end send
    /// the block on, re-encoded.
    fn finish_frame(&mut self, frame: Frame, out: &mut Vec<u8>) -> io::Result<()> {
        self.state = State::Head;
        let payload = std::mem::take(&mut self.payload);
        match &mut self.block {
            Some(block) => block.fragment.extend_from_slice(&payload),
            None => {
                let (prefix, fragment) = split_payload(frame, &payload)?;
                self.block = Some(Block {
                    kind: frame.kind,
                    flags: frame.flags,
                    stream: frame.stream,
                    prefix: prefix.to_vec(),
                    fragment: fragment.to_vec(),
                });
            }
        }
        if frame.flags & END_HEADERS != 0
            && let Some(block) = self.block.take()
        {
            let fields = self.decode(&block)?;
            write_block(&block, &encode(&fields), out);
        }
        Ok(())
    }

    /// The block's fields as the client meant them, `:authority` made valid.
    fn decode(&mut self, block: &Block) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut fields = Vec::new();
        let mut size = 0usize;
        // Fields referring to the dynamic table cost us more than they cost the client:
        // count them all, keep none past the limit.
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                size = size.saturating_add(name.len() + value.len() + 32);
                if size <= MAX_BLOCK {
                    fields.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| broken(format!("header block on stream {}: {e}", block.stream)))?;
        if size > MAX_BLOCK {
            return Err(broken(format!(
                "header list larger than {MAX_BLOCK} bytes on stream {}",
                block.stream
            )));
        }
        for (name, value) in &mut fields {
            if name.as_slice() == b":authority" && !valid_authority(value) {
                self.log_replacement(value);
                *value = REPLACEMENT.to_vec();
            }
        }
        Ok(fields)
    }

    fn log_replacement(&mut self, authority: &[u8]) {
        if !self.logged {
            self.logged = true;
            tracing::debug!(
                authority = %String::from_utf8_lossy(authority),
                "a client sent an :authority that is not a host; it is served as localhost"
            );
        }
    }
}

/// What h2 accepts: it parses `:authority` as a URI authority and refuses the request if
/// that fails.
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// The first frame's payload without its padding: (prefix, fragment).
fn split_payload(frame: Frame, payload: &[u8]) -> io::Result<(&[u8], &[u8])> {
    let mut body = payload;
    let mut pad = 0;
    if frame.flags & PADDED != 0 {
        let (&n, rest) = body
            .split_first()
            .ok_or_else(|| broken("a padded frame without a pad length"))?;
        pad = n as usize;
        body = rest;
    }
    let prefix = match frame.kind {
        HEADERS if frame.flags & PRIORITY != 0 => 5,
        PUSH_PROMISE => 4,
        _ => 0,
    };
    if body.len() < prefix + pad {
        return Err(broken(format!(
            "a frame on stream {} shorter than its padding",
            frame.stream
        )));
    }
    let (prefix, rest) = body.split_at(prefix);
    Ok((prefix, &rest[..rest.len() - pad]))
}

/// HPACK without state: every field a literal never added to the table, so the server's
/// table stays empty however many blocks it reads.
fn encode(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00); // literal header field without indexing, new name
        for s in [name, value] {
            // Writing into a Vec cannot fail.
            let _ = encode_integer_into(s.len(), 7, 0x00, &mut out);
            out.extend_from_slice(s);
        }
    }
    out
}

/// The block as the frame that opened it (padding dropped) and as many CONTINUATION frames
/// as [`MAX_FRAME`] requires.
fn write_block(block: &Block, encoded: &[u8], out: &mut Vec<u8>) {
    let room = MAX_FRAME - block.prefix.len();
    let (first, mut rest) = encoded.split_at(room.min(encoded.len()));
    let flags = block.flags & !(PADDED | END_HEADERS);
    let end = |rest: &[u8]| if rest.is_empty() { END_HEADERS } else { 0 };
    let len = block.prefix.len() + first.len();
    write_head(out, len, block.kind, flags | end(rest), block.stream);
    out.extend_from_slice(&block.prefix);
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(MAX_FRAME.min(rest.len()));
        rest = tail;
        write_head(out, chunk.len(), CONTINUATION, end(rest), block.stream);
        out.extend_from_slice(chunk);
    }
}

fn write_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// An accepted connection whose client-to-server bytes go through an [`AuthorityRewriter`].
pub struct AcceptAnyAuthority<S> {
    inner: S,
    rewriter: AuthorityRewriter,
    /// Rewritten bytes the server has not read yet, from `sent` on.
    out: Vec<u8>,
    sent: usize,
    scratch: Box<[u8]>,
}

impl<S> AcceptAnyAuthority<S> {
    pub fn new(inner: S) -> Self {
        AcceptAnyAuthority {
            inner,
            rewriter: AuthorityRewriter::default(),
            out: Vec::new(),
            sent: 0,
            scratch: vec![0; MAX_FRAME].into_boxed_slice(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AcceptAnyAuthority<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.sent < this.out.len() || buf.remaining() == 0 {
                let n = buf.remaining().min(this.out.len() - this.sent);
                buf.put_slice(&this.out[this.sent..this.sent + n]);
                this.sent += n;
                if this.sent == this.out.len() {
                    this.out.clear();
                    this.sent = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(())); // the client closed its side
            }
            if let Err(e) = this.rewriter.feed(read.filled(), &mut this.out) {
                tracing::warn!("closing a plugin client's connection: {e}");
                return Poll::Ready(Err(e));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AcceptAnyAuthority<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for AcceptAnyAuthority<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::Encoder;

    type Fields = Vec<(String, String)>;

    const RAW_PATH: &str = "/tmp/plugin-eventbus-7-1f/plugin.sock";
    const ENCODED_PATH: &str = "%2Ftmp%2Fplugin-eventbus-7-1f%2Fplugin.sock";

    fn request(authority: &str) -> Fields {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/grpc.health.v1.Health/Check"),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_head(&mut out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
        out
    }

    fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        frames.iter().for_each(|f| out.extend_from_slice(f));
        out
    }

    fn rewrite(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        AuthorityRewriter::default().feed(bytes, &mut out)?;
        Ok(out)
    }

    fn rewrite_bytewise(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut r = AuthorityRewriter::default();
        let mut out = Vec::new();
        for b in bytes {
            r.feed(std::slice::from_ref(b), &mut out)?;
        }
        Ok(out)
    }

    /// The client's encoder: dynamic table and all.
    fn hpack(encoder: &mut Encoder<'_>, fields: &Fields) -> Vec<u8> {
        encoder.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// The frames after the preface: (type, flags, stream, payload).
    fn frames(out: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        assert_eq!(&out[..PREFACE.len()], PREFACE);
        let mut rest = &out[PREFACE.len()..];
        let mut frames = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
            frames.push((rest[3], rest[4], stream, rest[9..9 + len].to_vec()));
            rest = &rest[9 + len..];
        }
        frames
    }

    /// The header lists a server reads from the rewritten bytes. Its decoder keeps one table
    /// for the connection, as h2's does, but of size 0: any use of the dynamic table in what
    /// we send would fail here.
    fn server_reads(out: &[u8]) -> Vec<Fields> {
        let mut decoder = Decoder::new();
        decoder.set_max_table_size(0);
        let mut lists = Vec::new();
        let mut block = Vec::new();
        for (kind, flags, _, payload) in frames(out) {
            match kind {
                HEADERS => {
                    let skip = if flags & PRIORITY != 0 { 5 } else { 0 };
                    assert_eq!(flags & PADDED, 0, "padding is dropped");
                    block = payload[skip..].to_vec();
                }
                CONTINUATION => block.extend_from_slice(&payload),
                _ => continue,
            }
            if flags & END_HEADERS != 0 {
                let fields = decoder
                    .decode(&block)
                    .expect("the server decodes our block");
                lists.push(
                    fields
                        .into_iter()
                        .map(|(n, v)| {
                            (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap())
                        })
                        .collect(),
                );
            }
        }
        lists
    }

    fn one_request(authority: &str) -> Vec<u8> {
        let block = hpack(&mut Encoder::new(), &request(authority));
        connection(&[frame(HEADERS, END_HEADERS, 1, &block)])
    }

    #[test]
    fn what_h2_takes_for_an_authority() {
        // Hosts, with or without a port, pass h2's check and so are left alone.
        for ok in [
            "unused",
            "localhost",
            "127.0.0.1:50051",
            "[::1]:8080",
            "plugin",
        ] {
            assert!(valid_authority(ok.as_bytes()), "{ok}");
        }
        // A socket path, raw or percent-encoded, or nothing at all, is what h2 refuses.
        for bad in [RAW_PATH, ENCODED_PATH, ""] {
            assert!(!valid_authority(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn a_valid_authority_passes_unchanged() {
        // go-plugin's "unused" reaches the server as the client sent it.
        let out = rewrite(&one_request("unused")).unwrap();
        assert_eq!(server_reads(&out), vec![request("unused")]);
    }

    #[test]
    fn a_raw_socket_path_authority_becomes_localhost() {
        // Older grpcio's raw path is served as localhost; every other field is kept, in order.
        let out = rewrite(&one_request(RAW_PATH)).unwrap();
        assert_eq!(server_reads(&out), vec![request("localhost")]);
    }

    #[test]
    fn a_percent_encoded_socket_path_authority_becomes_localhost() {
        // Newer grpcio's percent-encoded path likewise.
        let out = rewrite(&one_request(ENCODED_PATH)).unwrap();
        assert_eq!(server_reads(&out), vec![request("localhost")]);
    }

    #[test]
    fn the_clients_dynamic_table_is_followed_across_blocks() {
        // The first request adds every field to the client's table; the second is nothing but
        // one-byte references to those entries. Both reach the server whole, and the
        // authority taken from the table is replaced too.
        let list = request(ENCODED_PATH);
        let mut first = Vec::new();
        for (name, value) in &list {
            first.push(0x40); // literal with incremental indexing, new name
            for s in [name, value] {
                let _ = encode_integer_into(s.len(), 7, 0, &mut first);
                first.extend_from_slice(s.as_bytes());
            }
        }
        // The newest entry is index 62, so the first field is the oldest.
        let second: Vec<u8> = (0..list.len())
            .map(|i| 0x80 | (62 + list.len() - 1 - i) as u8)
            .collect();
        let out = rewrite(&connection(&[
            frame(HEADERS, END_HEADERS, 1, &first),
            frame(HEADERS, END_HEADERS, 3, &second),
        ]))
        .unwrap();
        assert_eq!(
            server_reads(&out),
            vec![request("localhost"), request("localhost")]
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn huffman_coded_indexed_requests_are_read() {
        // RFC 7541 C.4: three requests with Huffman-coded strings, each indexing into what the
        // ones before added to the table.
        let blocks = [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ];
        let frames: Vec<Vec<u8>> = blocks
            .iter()
            .zip([1, 3, 5])
            .map(|(b, stream)| frame(HEADERS, END_HEADERS, stream, &hex(b)))
            .collect();
        let out = rewrite(&connection(&frames)).unwrap();
        let common = [(":method", "GET"), (":scheme", "http"), (":path", "/")];
        let mut second = common.to_vec();
        second.extend([
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ]);
        assert_eq!(
            server_reads(&out),
            vec![
                fields(&[
                    common[0],
                    common[1],
                    common[2],
                    (":authority", "www.example.com")
                ]),
                fields(&second),
                fields(&[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":path", "/index.html"),
                    (":authority", "www.example.com"),
                    ("custom-key", "custom-value"),
                ]),
            ]
        );
    }

    #[test]
    fn a_block_split_over_continuation_frames_is_rewritten_whole() {
        // HEADERS + two CONTINUATIONs, fed at once and a byte at a time, reach the server as one
        // block with the authority replaced.
        let block = hpack(&mut Encoder::new(), &request(ENCODED_PATH));
        let (a, rest) = block.split_at(10);
        let (b, c) = rest.split_at(20);
        let input = connection(&[
            frame(HEADERS, 0, 1, a),
            frame(CONTINUATION, 0, 1, b),
            frame(CONTINUATION, END_HEADERS, 1, c),
        ]);
        for out in [rewrite(&input).unwrap(), rewrite_bytewise(&input).unwrap()] {
            assert_eq!(server_reads(&out), vec![request("localhost")]);
            assert_eq!(frames(&out).len(), 1, "one HEADERS frame");
        }
    }

    #[test]
    fn padding_is_dropped_and_priority_kept() {
        // A padded HEADERS frame with a priority: the server gets the same priority, no padding.
        let block = hpack(&mut Encoder::new(), &request(RAW_PATH));
        let priority = [0x80, 0, 0, 0, 15];
        let mut payload = vec![3];
        payload.extend_from_slice(&priority);
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0, 0, 0]);
        let flags = PADDED | PRIORITY | END_HEADERS;
        let out = rewrite(&connection(&[frame(HEADERS, flags, 1, &payload)])).unwrap();
        let (kind, flags, stream, payload) = frames(&out).remove(0);
        assert_eq!((kind, flags, stream), (HEADERS, PRIORITY | END_HEADERS, 1));
        assert_eq!(payload[..5], priority);
        assert_eq!(server_reads(&out), vec![request("localhost")]);
    }

    fn other_frames() -> Vec<Vec<u8>> {
        vec![
            frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100, 0, 4, 0, 1, 0, 0]), // SETTINGS
            frame(0x8, 0, 0, &[0, 0x0f, 0, 0]),                        // WINDOW_UPDATE
            frame(0x6, 0, 0, b"pingpong"),                             // PING
            frame(0x0, 0x1, 1, &[0, 0, 0, 0, 3, 8, 1, 16, 2]),         // DATA, END_STREAM
            frame(0x0, 0x8, 3, &[2, 9, 9, 0, 0]),                      // padded DATA
            frame(0x4, 0x1, 0, &[]),                                   // SETTINGS ack
            frame(0x3, 0, 3, &[0, 0, 0, 8]),                           // RST_STREAM
            frame(0x7, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]),               // GOAWAY
            frame(0xfa, 0xff, 5, b"an unknown frame type"),
        ]
    }

    #[test]
    fn frames_without_headers_pass_byte_for_byte() {
        // Everything but header blocks is copied as it came, however it is cut up.
        let input = connection(&other_frames());
        assert_eq!(rewrite(&input).unwrap(), input);
        assert_eq!(rewrite_bytewise(&input).unwrap(), input);
    }

    #[test]
    fn frames_around_a_rewritten_block_keep_their_bytes_and_order() {
        // A request between other frames: they are untouched, and the block is where it was.
        let block = hpack(&mut Encoder::new(), &request(ENCODED_PATH));
        let others = other_frames();
        let mut input = others[..3].to_vec();
        input.push(frame(HEADERS, END_HEADERS | 0x1, 1, &block));
        input.extend_from_slice(&others[3..]);
        let out = rewrite_bytewise(&connection(&input)).unwrap();
        let got = frames(&out);
        assert_eq!(got.len(), input.len());
        for (i, f) in got.iter().enumerate() {
            let bytes = frame(f.0, f.1, f.2, &f.3);
            if i == 3 {
                assert_eq!((f.0, f.1, f.2), (HEADERS, END_HEADERS | 0x1, 1));
            } else {
                assert_eq!(bytes, input[i], "frame {i}");
            }
        }
        assert_eq!(server_reads(&out), vec![request("localhost")]);
    }

    #[test]
    fn a_large_block_is_cut_into_frames_every_server_accepts() {
        // A 40 KB header comes out as HEADERS + CONTINUATIONs of at most 16 KiB each.
        let mut list = request(RAW_PATH);
        list.push(("x-big".into(), "b".repeat(40_000)));
        let block = hpack(&mut Encoder::new(), &list);
        let chunks: Vec<&[u8]> = block.chunks(MAX_FRAME).collect();
        let last = chunks.len() - 1;
        let input: Vec<Vec<u8>> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let kind = if i == 0 { HEADERS } else { CONTINUATION };
                frame(kind, if i == last { END_HEADERS } else { 0 }, 1, c)
            })
            .collect();
        let out = rewrite(&connection(&input)).unwrap();
        let got = frames(&out);
        assert!(got.len() >= 3);
        assert!(got.iter().all(|f| f.3.len() <= MAX_FRAME));
        assert_eq!(got[0].0, HEADERS);
        assert!(got[1..].iter().all(|f| f.0 == CONTINUATION));
        assert!(got[..got.len() - 1].iter().all(|f| f.1 & END_HEADERS == 0));
        let mut expected = request("localhost");
        expected.push(("x-big".into(), "b".repeat(40_000)));
        assert_eq!(server_reads(&out), vec![expected]);
    }

    #[test]
    fn a_header_block_over_the_limit_closes_the_connection() {
        // 1 MiB and a bit of CONTINUATIONs is refused before it is all buffered.
        let chunk = vec![0u8; MAX_FRAME];
        let mut input = vec![frame(HEADERS, 0, 1, &chunk)];
        for _ in 0..MAX_BLOCK / MAX_FRAME {
            input.push(frame(CONTINUATION, 0, 1, &chunk));
        }
        let err = rewrite(&connection(&input)).unwrap_err();
        assert!(
            err.to_string().contains("larger than 1048576 bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_block_that_decodes_past_the_limit_closes_the_connection() {
        // One 4000-byte entry in the table, then 300 one-byte references to it: 4 KB sent,
        // 1.2 MB decoded. Refused.
        let mut block = vec![0x40, 1, b'x'];
        let _ = encode_integer_into(4000, 7, 0, &mut block);
        block.extend(std::iter::repeat_n(b'v', 4000));
        block.extend(std::iter::repeat_n(0x80 | 62, 300));
        let err = rewrite(&connection(&[frame(HEADERS, END_HEADERS, 1, &block)])).unwrap_err();
        assert!(err.to_string().contains("header list larger than"), "{err}");
    }

    #[test]
    fn a_table_larger_than_the_server_allows_closes_the_connection() {
        // A size update to 8192: more than SETTINGS_HEADER_TABLE_SIZE's 4096.
        let mut block = Vec::new();
        let _ = encode_integer_into(8192, 5, 0x20, &mut block);
        block.extend(hpack(&mut Encoder::new(), &request("unused")));
        let err = rewrite(&connection(&[frame(HEADERS, END_HEADERS, 1, &block)])).unwrap_err();
        assert!(err.to_string().contains("size"), "{err}");
    }

    #[test]
    fn a_smaller_table_asked_by_the_client_is_followed() {
        // The client shrinks its table to nothing and then only uses literals: still read.
        let mut block = Vec::new();
        let _ = encode_integer_into(0, 5, 0x20, &mut block);
        let mut client = Encoder::new();
        client.set_max_table_size(0);
        block.extend(hpack(&mut client, &request(ENCODED_PATH)));
        let out = rewrite(&connection(&[frame(HEADERS, END_HEADERS, 1, &block)])).unwrap();
        assert_eq!(server_reads(&out), vec![request("localhost")]);
    }

    #[test]
    fn a_header_block_interrupted_by_another_frame_closes_the_connection() {
        // RFC 9113 §6.10: nothing but CONTINUATION on the same stream may follow.
        let block = hpack(&mut Encoder::new(), &request("unused"));
        for next in [
            frame(0x0, 0, 1, b"data"),
            frame(CONTINUATION, END_HEADERS, 3, &[]),
        ] {
            let input = connection(&[frame(HEADERS, 0, 1, &block), next]);
            assert!(rewrite(&input).is_err());
        }
        let stray = connection(&[frame(CONTINUATION, END_HEADERS, 1, &block)]);
        assert!(
            rewrite(&stray).is_err(),
            "a CONTINUATION with no block open"
        );
    }

    #[test]
    fn what_is_not_http2_passes_through() {
        // HTTP/1.1, or a preface that goes wrong halfway: the server sees exactly those bytes.
        for input in [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n\0\0\0\x01".to_vec(),
        ] {
            assert_eq!(rewrite(&input).unwrap(), input);
            assert_eq!(rewrite_bytewise(&input).unwrap(), input);
        }
    }

    #[test]
    fn random_frames_never_panic() {
        // A hostile client can send anything: errors, never panics.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut frames = Vec::new();
            for _ in 0..next() % 4 + 1 {
                let kind = [HEADERS, CONTINUATION, PUSH_PROMISE, 0x0][(next() % 4) as usize];
                let payload: Vec<u8> = (0..next() % 48).map(|_| next() as u8).collect();
                frames.push(frame(kind, next() as u8, (next() % 3) as u32, &payload));
            }
            let _ = rewrite(&connection(&frames));
        }
    }

    #[tokio::test]
    async fn the_connection_adapter_serves_rewritten_bytes_and_ends_with_the_client() {
        // Through a real unix socket pair: the server side reads the rewritten request, then
        // end of stream when the client closes.
        use std::io::Write;
        let (mut client, server) = std::os::unix::net::UnixStream::pair().unwrap();
        client.write_all(&one_request(ENCODED_PATH)).unwrap();
        drop(client);
        server.set_nonblocking(true).unwrap();
        let server = tokio::net::UnixStream::from_std(server).unwrap();
        let mut conn = AcceptAnyAuthority::new(server);
        let mut got = Vec::new();
        loop {
            let mut space = [0u8; 7]; // small reads: the adapter hands out what it holds in parts
            let mut buf = ReadBuf::new(&mut space);
            std::future::poll_fn(|cx| Pin::new(&mut conn).poll_read(cx, &mut buf))
                .await
                .unwrap();
            if buf.filled().is_empty() {
                break;
            }
            got.extend_from_slice(buf.filled());
        }
        assert_eq!(server_reads(&got), vec![request("localhost")]);
    }
}
