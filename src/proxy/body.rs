//! The body pipeline of one rewritten response: decode (if the origin compressed anyway) →
//! inject → encode for the client.

use bytes::{Bytes, BytesMut};

use crate::codec::{CodecError, Decoder, Encoder};
use crate::inject::{Injector, Outcome};

pub struct BodyRewrite {
    decoder: Option<Decoder>,
    injector: Injector,
    encoder: Option<Encoder>,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Decode(#[from] CodecError),
    #[error("cannot encode the body for the client: {0}")]
    Encode(#[from] std::io::Error),
}

impl BodyRewrite {
    pub fn new(decoder: Option<Decoder>, injector: Injector, encoder: Option<Encoder>) -> Self {
        BodyRewrite {
            decoder,
            injector,
            encoder,
        }
    }

    /// Processes one chunk from the origin (`end` on the last); returns the bytes for the client.
    pub fn process(&mut self, input: Bytes, end: bool) -> Result<Bytes, BodyError> {
        let plain = match self.decoder.as_mut() {
            Some(d) => d.write(&input)?,
            None => input,
        };
        let html = match (end, self.decoder.as_mut()) {
            (false, _) => self.injector.write(plain),
            // The last chunk as one piece: unchanged bytes go out as they came, not copied.
            (true, None) => self.injector.write_last(plain),
            (true, Some(d)) => {
                let rest = d.finish()?;
                let html = self.injector.write(plain);
                join(html, self.injector.write_last(rest))
            }
        };
        match self.encoder.as_mut() {
            None => Ok(html),
            Some(e) => {
                let mut out = e.write(&html)?;
                if end {
                    out = join(out, e.finish()?);
                }
                Ok(out)
            }
        }
    }

    pub fn outcome(&self) -> Outcome {
        self.injector.outcome()
    }
}

/// `a` then `b`, copied only when both have bytes (the usual last chunk has nothing after it).
fn join(a: Bytes, b: Bytes) -> Bytes {
    if b.is_empty() {
        return a;
    }
    if a.is_empty() {
        return b;
    }
    let mut out = BytesMut::with_capacity(a.len() + b.len());
    out.extend_from_slice(&a);
    out.extend_from_slice(&b);
    out.freeze()
}
