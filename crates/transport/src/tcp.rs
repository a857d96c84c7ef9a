//! TCP transport: one stream per connection, frames as described in `sheen_wire::frame`.
//! Bulk data is read straight into one buffer per message and handed up as `Bytes`; on send,
//! bulk `Bytes` are written from where they lie, without copying. A received bulk's frames
//! are checked through the crc32c of each 4 KiB piece (`sheen_wire::piece_crc`), which go up
//! with it; a sent bulk's frame crcs come from the pieces' crcs when the message has them.

use std::io::IoSlice;
use std::net::SocketAddr;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use sheen_wire::frame::{BULK_HEADER_BYTES, MSG_HEADER_BYTES};
use sheen_wire::limits::BULK_FRAME_BYTES;
use sheen_wire::piece_crc::{self, PIECE_BYTES};
use sheen_wire::{BulkFrameHeader, Message, MsgHeader, Nid};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::pool;
use crate::{Connection, Listener, MsgReceiver, MsgSender, Transport, TransportError};

/// Socket buffer for reads; large enough that small messages come in one syscall.
const READ_BUFFER_BYTES: usize = 256 << 10;

#[derive(Default)]
pub struct TcpTransport {}

#[async_trait]
impl Transport for TcpTransport {
    async fn connect(&self, nid: &Nid) -> Result<Connection, TransportError> {
        let stream = TcpStream::connect(nid.socket_addr())
            .await
            .map_err(|source| TransportError::Connect { nid: *nid, source })?;
        Ok(split(stream, *nid))
    }

    async fn listen(&self, nid: &Nid) -> Result<Box<dyn Listener>, TransportError> {
        let listener = TcpListener::bind(nid.socket_addr())
            .await
            .map_err(|source| TransportError::Listen { nid: *nid, source })?;
        let local = listener.local_addr()?;
        let nid = Nid {
            port: local.port(),
            ..*nid
        };
        Ok(Box::new(TcpListenerImpl { listener, nid }))
    }
}

fn split(stream: TcpStream, peer: Nid) -> Connection {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    Connection {
        sender: Box::new(TcpSender { w }),
        receiver: Box::new(TcpReceiver {
            r: BufReader::with_capacity(READ_BUFFER_BYTES, r),
        }),
        peer,
    }
}

struct TcpListenerImpl {
    listener: TcpListener,
    nid: Nid,
}

#[async_trait]
impl Listener for TcpListenerImpl {
    async fn accept(&mut self) -> Result<Connection, TransportError> {
        let (stream, addr): (TcpStream, SocketAddr) = self.listener.accept().await?;
        let peer = Nid {
            addr: addr.ip(),
            port: addr.port(),
            ..self.nid
        };
        Ok(split(stream, peer))
    }

    fn local_nid(&self) -> Nid {
        self.nid
    }
}

struct TcpSender {
    w: OwnedWriteHalf,
}

#[async_trait]
impl MsgSender for TcpSender {
    async fn send(&mut self, msg: Message) -> Result<(), TransportError> {
        let mut header = msg.header;
        header.seal_body(&msg.body);
        header.bulk_len = msg.bulk.len() as u64;
        let mut head = Vec::with_capacity(MSG_HEADER_BYTES + msg.body.len());
        head.extend_from_slice(&header.encode());
        head.extend_from_slice(&msg.body);
        // The whole message goes out in one gathered write where the socket takes it.
        let total = msg.bulk.len();
        let frames = total.div_ceil(BULK_FRAME_BYTES as usize);
        let crcs = msg.bulk_crcs.as_deref();
        let mut pieces = Vec::with_capacity(frames);
        let mut rest = msg.bulk;
        let mut at = 0;
        while !rest.is_empty() {
            let n = rest.len().min(BULK_FRAME_BYTES as usize);
            let piece = rest.split_to(n);
            let crc = crcs
                .and_then(|c| piece_crc::range(c, total, at, at + n))
                .unwrap_or_else(|| crc32c::crc32c(&piece));
            let bh = BulkFrameHeader {
                xid: header.xid,
                len: u32::try_from(n).unwrap_or(u32::MAX),
                crc,
            };
            pieces.push((bh.encode(), piece));
            at += n;
        }
        let mut slices = Vec::with_capacity(1 + 2 * pieces.len());
        slices.push(IoSlice::new(&head));
        for (bh, piece) in &pieces {
            slices.push(IoSlice::new(bh));
            slices.push(IoSlice::new(piece));
        }
        crate::write_all_vectored(&mut self.w, &mut slices).await?;
        Ok(())
    }
}

struct TcpReceiver {
    r: BufReader<OwnedReadHalf>,
}

#[async_trait]
impl MsgReceiver for TcpReceiver {
    async fn recv(&mut self) -> Result<Message, TransportError> {
        let mut hb = [0u8; MSG_HEADER_BYTES];
        match self.r.read_exact(&mut hb).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(TransportError::Closed)
            }
            Err(e) => return Err(e.into()),
        }
        let header = MsgHeader::decode(&hb)?;
        let mut body = BytesMut::zeroed(header.body_len as usize);
        self.r.read_exact(&mut body).await?;
        header.check_body(&body)?;
        let mut crcs: Option<Vec<u32>> = None;
        let bulk = if header.bulk_len == 0 {
            Bytes::new()
        } else {
            // bulk_len was checked against MAX_BULK_BYTES when the header was decoded.
            let total = header.bulk_len;
            // Filled straight from the socket, frame by frame, without zeroing it first, in
            // a buffer used again once the bulk is dropped.
            let mut buf = pool::take(total as usize);
            crcs = Some(Vec::with_capacity((total as usize).div_ceil(PIECE_BYTES)));
            while (buf.len() as u64) < total {
                let mut bh = [0u8; BULK_HEADER_BYTES];
                self.r.read_exact(&mut bh).await?;
                let fh = BulkFrameHeader::decode(&bh, header.xid, total - buf.len() as u64)?;
                let start = buf.len();
                let end = start + fh.len as usize;
                while buf.len() < end {
                    let want = (end - buf.len()) as u64;
                    if (&mut self.r).take(want).read_buf(&mut buf).await? == 0 {
                        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                    }
                }
                let frame = &buf.as_ref()[start..end];
                match crcs.as_mut().filter(|_| start.is_multiple_of(PIECE_BYTES)) {
                    // The frame's crc from its pieces': one pass over the bytes, which
                    // leaves the pieces' crcs for whoever stores or checks them next.
                    Some(list) => {
                        let mine = piece_crc::pieces(frame);
                        let computed = piece_crc::range(&mine, frame.len(), 0, frame.len());
                        fh.check_crc(computed.unwrap_or_else(|| crc32c::crc32c(frame)))?;
                        list.extend(mine);
                    }
                    // A frame that starts inside a piece (not from a Sheen sender): checked
                    // whole, and no pieces from here on.
                    None => {
                        fh.check(frame)?;
                        crcs = None;
                    }
                }
            }
            buf.freeze()
        };
        let bulk_crcs = crcs
            .filter(|c| piece_crc::fits(c, bulk.len()))
            .map(Into::into);
        Ok(Message {
            header,
            body: body.freeze(),
            bulk,
            bulk_crcs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sheen_wire::frame::NO_TARGET;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (Connection, Connection) {
        let t = TcpTransport::default();
        let mut l = t
            .listen(&Nid::parse("127.0.0.1:0@tcp").unwrap())
            .await
            .unwrap();
        let nid = l.local_nid();
        let (c, s) = tokio::join!(t.connect(&nid), l.accept());
        (c.unwrap(), s.unwrap())
    }

    #[tokio::test]
    async fn message_with_bulk_round_trips() {
        let (mut c, mut s) = pair().await;
        let bulk: Bytes = (0..(3 * BULK_FRAME_BYTES + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let msg = Message {
            header: MsgHeader::request(4, 9, NO_TARGET),
            body: Bytes::from_static(b"body"),
            bulk: bulk.clone(),
            bulk_crcs: None,
        };
        c.sender.send(msg).await.unwrap();
        let got = s.receiver.recv().await.unwrap();
        assert_eq!(got.header.xid, 9);
        assert_eq!(&got.body[..], b"body");
        assert_eq!(got.bulk, bulk);
        drop(c);
        assert!(matches!(
            s.receiver.recv().await,
            Err(TransportError::Closed)
        ));
    }

    #[tokio::test]
    async fn piece_crcs_go_both_ways_and_wrong_ones_are_caught() {
        let (mut c, mut s) = pair().await;
        let bulk: Bytes = (0..(2 * BULK_FRAME_BYTES as usize + 5000))
            .map(|i| (i % 253) as u8)
            .collect();
        let crcs: std::sync::Arc<[u32]> = piece_crc::pieces(&bulk).into();
        let msg = Message {
            header: MsgHeader::request(4, 11, NO_TARGET),
            body: Bytes::new(),
            bulk: bulk.clone(),
            bulk_crcs: Some(crcs.clone()),
        };
        c.sender.send(msg).await.unwrap();
        let got = s.receiver.recv().await.unwrap();
        assert_eq!(got.bulk, bulk);
        assert_eq!(got.bulk_crcs.as_deref(), Some(&crcs[..]), "pieces recorded");
        // The frames' crcs come from the crcs given: wrong ones are caught by the receiver.
        let mut wrong = crcs.to_vec();
        wrong[300] ^= 1;
        let msg = Message {
            header: MsgHeader::request(4, 12, NO_TARGET),
            body: Bytes::new(),
            bulk,
            bulk_crcs: Some(wrong.into()),
        };
        c.sender.send(msg).await.unwrap();
        assert!(matches!(
            s.receiver.recv().await,
            Err(TransportError::Frame(
                sheen_wire::FrameError::BulkChecksum { .. }
            ))
        ));
    }

    #[tokio::test]
    async fn garbage_and_bad_checksums_are_rejected() {
        let t = TcpTransport::default();
        let mut l = t
            .listen(&Nid::parse("127.0.0.1:0@tcp").unwrap())
            .await
            .unwrap();
        let addr = l.local_nid().socket_addr();
        // A valid header whose body checksum does not match the body that follows.
        let mut h = MsgHeader::request(4, 1, NO_TARGET);
        h.seal_body(b"good");
        let mut bad_body = h.encode().to_vec();
        bad_body.extend_from_slice(b"evil");
        for raw in [bad_body, vec![0x42u8; 200]] {
            let (stream, accepted) = tokio::join!(TcpStream::connect(addr), l.accept());
            let mut stream = stream.unwrap();
            let mut accepted = accepted.unwrap();
            stream.write_all(&raw).await.unwrap();
            assert!(matches!(
                accepted.receiver.recv().await,
                Err(TransportError::Frame(_))
            ));
        }
        // A good connection on the same listener still works.
        let nid = l.local_nid();
        let (c, s) = tokio::join!(t.connect(&nid), l.accept());
        let (mut c, mut s) = (c.unwrap(), s.unwrap());
        let msg = Message {
            header: MsgHeader::request(400, 2, NO_TARGET),
            body: Bytes::new(),
            bulk: Bytes::new(),
            bulk_crcs: None,
        };
        c.sender.send(msg).await.unwrap();
        assert_eq!(s.receiver.recv().await.unwrap().header.opcode, 400);
    }

    #[tokio::test]
    async fn bulk_cut_short_is_an_error() {
        let t = TcpTransport::default();
        let mut l = t
            .listen(&Nid::parse("127.0.0.1:0@tcp").unwrap())
            .await
            .unwrap();
        let addr = l.local_nid().socket_addr();
        let data = vec![7u8; 10_000];
        let mut h = MsgHeader::request(4, 3, NO_TARGET);
        h.seal_body(b"");
        h.bulk_len = data.len() as u64;
        let mut raw = h.encode().to_vec();
        raw.extend_from_slice(&BulkFrameHeader::for_data(3, &data).encode());
        raw.extend_from_slice(&data[..4_000]);
        let (stream, accepted) = tokio::join!(TcpStream::connect(addr), l.accept());
        let mut stream = stream.unwrap();
        let mut accepted = accepted.unwrap();
        stream.write_all(&raw).await.unwrap();
        drop(stream);
        assert!(accepted.receiver.recv().await.is_err());
    }
}
