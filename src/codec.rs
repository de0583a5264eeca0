//! Content codings of origin responses: smproxy asks the origin for `identity`, and when an
//! origin compresses anyway (gzip, deflate, br, zstd) the body is decoded for the rewriter and
//! encoded again for the client, chunk by chunk, so streaming is kept.

use std::io::Write;

use bytes::Bytes;

/// A `Content-Encoding` that smproxy cannot decode (`compress`, stacked codings, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported content coding")]
pub struct UnknownCoding;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    /// A single `Content-Encoding` token; `None` for identity, `Err` for what cannot be decoded.
    pub fn parse(value: &str) -> Result<Option<Coding>, UnknownCoding> {
        let v = value.trim().to_ascii_lowercase();
        match v.as_str() {
            "" | "identity" => Ok(None),
            "gzip" | "x-gzip" => Ok(Some(Coding::Gzip)),
            "deflate" => Ok(Some(Coding::Deflate)),
            "br" => Ok(Some(Coding::Brotli)),
            "zstd" => Ok(Some(Coding::Zstd)),
            _ => Err(UnknownCoding),
        }
    }

    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// Whether an `Accept-Encoding` value accepts `coding` (q=0 refuses it).
pub fn accepts(accept_encoding: &str, coding: Coding) -> bool {
    let mut star = None;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
            })
            .unwrap_or(1.0);
        let matches = name == coding.token() || (coding == Coding::Gzip && name == "x-gzip");
        if matches {
            return q > 0.0;
        }
        if name == "*" {
            star = Some(q > 0.0);
        }
    }
    star.unwrap_or(false)
}

#[derive(Debug, thiserror::Error)]
#[error("cannot decode the {coding} body: {source}")]
pub struct CodecError {
    coding: &'static str,
    source: std::io::Error,
}

enum Dec {
    Gzip(flate2::write::MultiGzDecoder<Vec<u8>>),
    Zlib(flate2::write::ZlibDecoder<Vec<u8>>),
    Raw(flate2::write::DeflateDecoder<Vec<u8>>),
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
    /// `deflate` before its first bytes: zlib-wrapped (per the RFC) or raw (as some servers send).
    DeflatePending,
}

/// Streaming decoder of one response body.
pub struct Decoder {
    coding: Coding,
    inner: Dec,
}

impl Decoder {
    pub fn new(coding: Coding) -> Result<Self, CodecError> {
        let inner = match coding {
            Coding::Gzip => Dec::Gzip(flate2::write::MultiGzDecoder::new(Vec::new())),
            Coding::Deflate => Dec::DeflatePending,
            Coding::Brotli => {
                Dec::Brotli(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096)))
            }
            Coding::Zstd => Dec::Zstd(zstd::stream::write::Decoder::new(Vec::new()).map_err(
                |source| CodecError {
                    coding: "zstd",
                    source,
                },
            )?),
        };
        Ok(Decoder { coding, inner })
    }

    fn err(&self, source: std::io::Error) -> CodecError {
        CodecError {
            coding: self.coding.token(),
            source,
        }
    }

    /// Decodes a chunk; returns the plain bytes available so far.
    pub fn write(&mut self, data: &[u8]) -> Result<Bytes, CodecError> {
        if let Dec::DeflatePending = self.inner {
            if data.is_empty() {
                return Ok(Bytes::new());
            }
            let zlib = data.len() >= 2
                && data[0] & 0x0f == 8
                && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0;
            self.inner = if zlib {
                Dec::Zlib(flate2::write::ZlibDecoder::new(Vec::new()))
            } else {
                Dec::Raw(flate2::write::DeflateDecoder::new(Vec::new()))
            };
        }
        let res = match &mut self.inner {
            Dec::Gzip(d) => d
                .write_all(data)
                .and_then(|_| d.flush())
                .map(|_| std::mem::take(d.get_mut())),
            Dec::Zlib(d) => d
                .write_all(data)
                .and_then(|_| d.flush())
                .map(|_| std::mem::take(d.get_mut())),
            Dec::Raw(d) => d
                .write_all(data)
                .and_then(|_| d.flush())
                .map(|_| std::mem::take(d.get_mut())),
            Dec::Brotli(d) => d
                .write_all(data)
                .and_then(|_| d.flush())
                .map(|_| std::mem::take(d.get_mut())),
            Dec::Zstd(d) => d
                .write_all(data)
                .and_then(|_| d.flush())
                .map(|_| std::mem::take(d.get_mut())),
            Dec::DeflatePending => Ok(Vec::new()),
        };
        res.map(Bytes::from).map_err(|e| self.err(e))
    }

    /// Ends the body; an incomplete stream is an error.
    pub fn finish(&mut self) -> Result<Bytes, CodecError> {
        let inner = std::mem::replace(&mut self.inner, Dec::DeflatePending);
        let res = match inner {
            Dec::Gzip(d) => d.finish(),
            Dec::Zlib(d) => d.finish(),
            Dec::Raw(d) => d.finish(),
            Dec::Brotli(d) => d
                .into_inner()
                .map_err(|_| std::io::Error::other("truncated brotli stream")),
            Dec::Zstd(mut d) => d.flush().map(|_| d.into_inner()),
            Dec::DeflatePending => Ok(Vec::new()),
        };
        res.map(Bytes::from).map_err(|e| self.err(e))
    }
}

enum Enc {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zlib(flate2::write::ZlibEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Done,
}

/// Streaming encoder for the client; each chunk is flushed so the client can start rendering.
pub struct Encoder {
    inner: Enc,
}

impl Encoder {
    pub fn new(coding: Coding) -> std::io::Result<Self> {
        let level = flate2::Compression::new(5);
        let inner = match coding {
            Coding::Gzip => Enc::Gzip(flate2::write::GzEncoder::new(Vec::new(), level)),
            Coding::Deflate => Enc::Zlib(flate2::write::ZlibEncoder::new(Vec::new(), level)),
            Coding::Brotli => Enc::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                5,
                22,
            ))),
            Coding::Zstd => Enc::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3)?),
        };
        Ok(Encoder { inner })
    }

    pub fn write(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        if data.is_empty() {
            return Ok(Bytes::new());
        }
        let out = match &mut self.inner {
            Enc::Gzip(e) => e
                .write_all(data)
                .and_then(|_| e.flush())
                .map(|_| std::mem::take(e.get_mut()))?,
            Enc::Zlib(e) => e
                .write_all(data)
                .and_then(|_| e.flush())
                .map(|_| std::mem::take(e.get_mut()))?,
            Enc::Brotli(e) => e
                .write_all(data)
                .and_then(|_| e.flush())
                .map(|_| std::mem::take(e.get_mut()))?,
            Enc::Zstd(e) => e
                .write_all(data)
                .and_then(|_| e.flush())
                .map(|_| std::mem::take(e.get_mut()))?,
            Enc::Done => Vec::new(),
        };
        Ok(Bytes::from(out))
    }

    pub fn finish(&mut self) -> std::io::Result<Bytes> {
        let out = match std::mem::replace(&mut self.inner, Enc::Done) {
            Enc::Gzip(e) => e.finish()?,
            Enc::Zlib(e) => e.finish()?,
            Enc::Brotli(mut e) => {
                e.flush()?;
                e.into_inner()
            }
            Enc::Zstd(e) => e.finish()?,
            Enc::Done => Vec::new(),
        };
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(coding: Coding) {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {i} <p>hello</p>\n").into_bytes())
            .collect();
        let mut enc = Encoder::new(coding).unwrap();
        let mut compressed = Vec::new();
        for c in text.chunks(3000) {
            compressed.extend_from_slice(&enc.write(c).unwrap());
        }
        compressed.extend_from_slice(&enc.finish().unwrap());
        assert!(compressed.len() < text.len() / 3, "{coding:?} compresses");
        let mut dec = Decoder::new(coding).unwrap();
        let mut plain = Vec::new();
        for c in compressed.chunks(777) {
            plain.extend_from_slice(&dec.write(c).unwrap());
        }
        plain.extend_from_slice(&dec.finish().unwrap());
        assert_eq!(plain, text, "{coding:?}");
    }

    #[test]
    fn every_coding_roundtrips_in_chunks() {
        for c in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            roundtrip(c);
        }
    }

    #[test]
    fn raw_deflate_is_decoded_too() {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"<html>raw deflate</html>").unwrap();
        let raw = e.finish().unwrap();
        let mut d = Decoder::new(Coding::Deflate).unwrap();
        let mut out = d.write(&raw).unwrap().to_vec();
        out.extend_from_slice(&d.finish().unwrap());
        assert_eq!(out, b"<html>raw deflate</html>");
    }

    #[test]
    fn accept_encoding() {
        assert!(accepts("gzip, deflate, br", Coding::Brotli));
        assert!(accepts("gzip;q=0.5", Coding::Gzip));
        assert!(!accepts("gzip;q=0", Coding::Gzip));
        assert!(!accepts("identity", Coding::Gzip));
        assert!(accepts("*", Coding::Zstd));
        assert!(!accepts("*, zstd;q=0", Coding::Zstd));
        assert_eq!(Coding::parse("X-GZIP"), Ok(Some(Coding::Gzip)));
        assert_eq!(Coding::parse("compress"), Err(UnknownCoding));
    }
}
