//! The small part of AMF0 that RTMP commands need: decoding any value (bounded
//! nesting) and encoding the few value kinds the server sends.

/// Deepest object/array nesting accepted while decoding; deeper input is an error
/// (keeps recursion bounded on hostile input).
const MAX_DEPTH: usize = 16;

/// A decoded AMF0 value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Number(f64),
    Boolean(bool),
    String(String),
    /// Anonymous object, typed object or ECMA array: ordered key/value pairs.
    Object(Vec<(String, Value)>),
    Null,
    Undefined,
    StrictArray(Vec<Value>),
    /// Date (milliseconds since the epoch; the time-zone field is dropped).
    Date(f64),
    /// A reference, XML document or unsupported marker we carry along without meaning.
    Other,
}

impl Value {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// A property of an object value.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(props) => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// An AMF0 decoding failure: byte offset within the decoded buffer and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub offset: usize,
    pub reason: String,
}

type DResult<T> = Result<T, DecodeError>;

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err<T>(&self, reason: impl Into<String>) -> DResult<T> {
        Err(DecodeError {
            offset: self.pos,
            reason: reason.into(),
        })
    }

    fn take(&mut self, n: usize) -> DResult<&'a [u8]> {
        match self
            .pos
            .checked_add(n)
            .and_then(|end| self.data.get(self.pos..end))
        {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => self.err(format!("truncated: need {n} more bytes")),
        }
    }

    fn u8(&mut self) -> DResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> DResult<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> DResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> DResult<f64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn short_string(&mut self) -> DResult<String> {
        let len = usize::from(self.u16()?);
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn long_string(&mut self) -> DResult<String> {
        let len = self.u32()?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    /// Reads key/value pairs up to and including the object-end marker.
    fn properties(&mut self, depth: usize) -> DResult<Vec<(String, Value)>> {
        let mut props = Vec::new();
        loop {
            let key = self.short_string()?;
            if key.is_empty() && self.data.get(self.pos) == Some(&0x09) {
                self.pos += 1;
                return Ok(props);
            }
            let value = self.value(depth + 1)?;
            props.push((key, value));
        }
    }

    fn value(&mut self, depth: usize) -> DResult<Value> {
        if depth > MAX_DEPTH {
            return self.err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        let marker_at = self.pos;
        let marker = self.u8()?;
        Ok(match marker {
            0x00 => Value::Number(self.f64()?),
            0x01 => Value::Boolean(self.u8()? != 0),
            0x02 => Value::String(self.short_string()?),
            0x03 => Value::Object(self.properties(depth)?),
            0x05 => Value::Null,
            0x06 => Value::Undefined,
            0x07 => {
                self.u16()?;
                Value::Other
            }
            0x08 => {
                // ECMA array: an approximate count, then properties like an object.
                self.u32()?;
                Value::Object(self.properties(depth)?)
            }
            0x0A => {
                let count = self.u32()?;
                let mut items = Vec::new();
                for _ in 0..count {
                    // Each item takes at least one byte, so a bogus count fails on
                    // truncation instead of allocating.
                    items.push(self.value(depth + 1)?);
                }
                Value::StrictArray(items)
            }
            0x0B => {
                let ms = self.f64()?;
                self.u16()?;
                Value::Date(ms)
            }
            0x0C => Value::String(self.long_string()?),
            0x0F => {
                self.long_string()?;
                Value::Other
            }
            0x10 => {
                self.short_string()?;
                Value::Object(self.properties(depth)?)
            }
            0x0D => Value::Other,
            0x11 => {
                self.pos = marker_at;
                return self.err("AMF3 values are not supported");
            }
            m => {
                self.pos = marker_at;
                return self.err(format!("unknown AMF0 marker 0x{m:02x}"));
            }
        })
    }
}

/// Decodes every value in `data`.
pub(crate) fn decode_all(data: &[u8]) -> DResult<Vec<Value>> {
    let mut r = Reader { data, pos: 0 };
    let mut out = Vec::new();
    while r.pos < data.len() {
        out.push(r.value(0)?);
    }
    Ok(out)
}

/// Appends the encoding of `value` to `out`. Strings longer than 65535 bytes are
/// written as long strings.
pub(crate) fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Number(n) => {
            out.push(0x00);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Boolean(b) => {
            out.push(0x01);
            out.push(u8::from(*b));
        }
        Value::String(s) => match u16::try_from(s.len()) {
            Ok(len) => {
                out.push(0x02);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Err(_) => {
                out.push(0x0C);
                let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&s.as_bytes()[..len as usize]);
            }
        },
        Value::Object(props) => {
            out.push(0x03);
            for (k, v) in props {
                let key = &k.as_bytes()[..k.len().min(usize::from(u16::MAX))];
                // Length fits: truncated to u16::MAX above.
                out.extend_from_slice(&(key.len() as u16).to_be_bytes());
                out.extend_from_slice(key);
                encode(v, out);
            }
            out.extend_from_slice(&[0, 0, 0x09]);
        }
        Value::Null => out.push(0x05),
        Value::Undefined | Value::Other => out.push(0x06),
        Value::StrictArray(items) => {
            out.push(0x0A);
            let len = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            for v in items.iter().take(len as usize) {
                encode(v, out);
            }
        }
        Value::Date(ms) => {
            out.push(0x0B);
            out.extend_from_slice(&ms.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
    }
}

/// The encoding of `values`, one after the other (a command message's body).
pub(crate) fn encode_all(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode(v, &mut out);
    }
    out
}

/// Appends an ECMA array (marker 0x08: a count, then key/value pairs like an object),
/// the form FLV `onMetaData` uses. Decoding reads it back as [`Value::Object`].
pub(crate) fn encode_ecma_array(props: &[(&str, Value)], out: &mut Vec<u8>) {
    out.push(0x08);
    let count = u32::try_from(props.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for (k, v) in props {
        let key = &k.as_bytes()[..k.len().min(usize::from(u16::MAX))];
        // Length fits: truncated to u16::MAX above.
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key);
        encode(v, out);
    }
    out.extend_from_slice(&[0, 0, 0x09]);
}

/// Shorthand for building an object value.
pub(crate) fn object(props: &[(&str, Value)]) -> Value {
    Value::Object(
        props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

/// Shorthand for a string value.
pub(crate) fn string(s: &str) -> Value {
    Value::String(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let values = vec![
            string("connect"),
            Value::Number(1.0),
            object(&[
                ("app", string("live")),
                ("fpad", Value::Boolean(false)),
                ("n", Value::Null),
                ("arr", Value::StrictArray(vec![Value::Number(2.5)])),
            ]),
            Value::Undefined,
            Value::Date(12.0),
        ];
        let mut out = Vec::new();
        for v in &values {
            encode(v, &mut out);
        }
        assert_eq!(decode_all(&out).unwrap(), values);
    }

    #[test]
    fn ecma_array_decodes_as_object() {
        let mut out = Vec::new();
        encode_ecma_array(
            &[
                ("width", Value::Number(640.0)),
                ("stereo", Value::Boolean(true)),
            ],
            &mut out,
        );
        assert_eq!(&out[..5], &[0x08, 0, 0, 0, 2]);
        assert_eq!(
            decode_all(&out).unwrap(),
            [object(&[
                ("width", Value::Number(640.0)),
                ("stereo", Value::Boolean(true))
            ])]
        );
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let mut data = Vec::new();
        for _ in 0..1000 {
            data.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
        }
        let err = decode_all(&data).unwrap_err();
        assert!(err.reason.contains("nesting"), "{err:?}");
    }

    #[test]
    fn huge_strict_array_count_fails_cleanly() {
        let data = [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05];
        assert!(decode_all(&data).is_err());
    }

    #[test]
    fn truncated_inputs_fail() {
        let mut out = Vec::new();
        encode(
            &object(&[("code", string("NetStream.Publish.Start"))]),
            &mut out,
        );
        for end in 0..out.len() {
            assert!(decode_all(&out[..end]).is_err() || end == 0);
        }
    }
}
