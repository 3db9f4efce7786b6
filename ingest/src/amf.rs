//! How deeply AMF values nest, found without recursion (pure; fuzzed).
//!
//! rml_amf0 decodes objects, ECMA arrays and strict arrays by recursion, and
//! drops the values it built the same way, so one `connect` nested tens of
//! thousands of levels deep overflows the stack and aborts the process
//! (`catch_unwind` cannot catch that). [`check_depth`] walks a message's
//! values with an explicit stack and refuses any that nest deeper than a limit
//! before the message reaches rml_rtmp.
//!
//! It follows AMF0 (Adobe's AMF0 spec, section 2) including typed objects and
//! the switch to AMF3 (AMF3 spec, section 3): arrays, objects (with traits
//! references), object vectors and dictionaries. Its grammar is a superset of
//! what rml_amf0 decodes, read the same way: where it cannot read on (a marker
//! it does not know, an externalizable AMF3 object, truncation) it stops, and
//! rml_amf0, which knows less, fails on the same bytes before going deeper.

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AMF values nested more than {limit} levels deep")]
pub struct TooDeep {
    /// The configured limit.
    pub limit: usize,
}

/// AMF0 markers (AMF0 spec 2.1).
mod m0 {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
    pub const UNSUPPORTED: u8 = 0x0D;
    pub const XML_DOCUMENT: u8 = 0x0F;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS: u8 = 0x11;
}

/// AMF3 markers (AMF3 spec 3.1).
mod m3 {
    pub const INTEGER: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const STRING: u8 = 0x06;
    pub const XML_DOC: u8 = 0x07;
    pub const DATE: u8 = 0x08;
    pub const ARRAY: u8 = 0x09;
    pub const OBJECT: u8 = 0x0A;
    pub const XML: u8 = 0x0B;
    pub const BYTE_ARRAY: u8 = 0x0C;
    pub const VECTOR_INT: u8 = 0x0D;
    pub const VECTOR_UINT: u8 = 0x0E;
    pub const VECTOR_DOUBLE: u8 = 0x0F;
    pub const VECTOR_OBJECT: u8 = 0x10;
    pub const DICTIONARY: u8 = 0x11;
}

/// An open container and what it expects next.
#[derive(Debug, Clone, Copy)]
enum Open {
    /// AMF0 object, ECMA array or typed object: a key, or the end marker.
    Object0,
    /// AMF0 strict array: this many more values (an end marker also closes it,
    /// as rml_amf0 reads it).
    Strict0(u32),
    /// AMF3 array, associative part: a key, or the empty string.
    Assoc3 { dense: u32 },
    /// AMF3 values in a row: dense array items, sealed members, vector items
    /// and dictionary keys and values; then `dynamic` members if set.
    Values3 { left: u64, dynamic: bool },
    /// AMF3 dynamic members: a key, or the empty string.
    Dynamic3,
}

/// A cursor over the message; every read fails with `None` at the end.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    fn skip(&mut self, n: u64) -> Option<()> {
        let left = (self.data.len() - self.pos) as u64;
        (n <= left).then(|| self.pos += n as usize)
    }
    fn be(&mut self, n: usize) -> Option<u32> {
        let bytes = self.data.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(bytes.iter().fold(0, |v, b| v << 8 | u32::from(*b)))
    }
    /// AMF3's variable-length 29-bit integer (AMF3 spec 1.3.1).
    fn u29(&mut self) -> Option<u32> {
        let mut v = 0u32;
        for i in 0..4 {
            let b = self.u8()?;
            if i == 3 {
                return Some(v << 8 | u32::from(b));
            }
            v = v << 7 | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                break;
            }
        }
        Some(v)
    }
    /// An AMF3 string (or a reference to one); `Some(true)` when it is empty.
    fn string3(&mut self) -> Option<bool> {
        let h = self.u29()?;
        if h & 1 == 0 {
            return Some(false); // A reference to an earlier string.
        }
        self.skip(u64::from(h >> 1))?;
        Some(h >> 1 == 0)
    }
}

/// What one step of the walk found.
enum Step {
    /// Read on.
    More,
    /// Every value was read.
    Done,
    /// A container opened deeper than the limit.
    TooDeep,
}

/// The walk over one message: the reader, the open containers, and the AMF3
/// traits seen so far, as (sealed member count, dynamic).
struct Walk<'a> {
    r: Reader<'a>,
    stack: Vec<Open>,
    traits: Vec<(u32, bool)>,
}

/// Checks every AMF value of a message body (AMF0, switching to AMF3 where
/// marked). `Err` when one nests more than `limit` containers deep; `Ok` for
/// anything else, malformed or not, which is left to the decoder.
pub fn check_depth(body: &[u8], limit: usize) -> Result<(), TooDeep> {
    let mut walk = Walk {
        r: Reader { data: body, pos: 0 },
        stack: Vec::new(),
        traits: Vec::new(),
    };
    // Every step reads at least one byte or closes a container: O(body).
    loop {
        match walk.step(limit) {
            Some(Step::More) => {}
            Some(Step::Done) | None => return Ok(()),
            Some(Step::TooDeep) => return Err(TooDeep { limit }),
        }
    }
}

impl Walk<'_> {
    /// Reads a key or end marker of the innermost container, then one value;
    /// `None` where the message cannot be read further.
    fn step(&mut self, limit: usize) -> Option<Step> {
        let r = &mut self.r;
        let amf3 = match self.stack.last_mut() {
            None if r.pos == r.data.len() => return Some(Step::Done),
            None => false,
            Some(Open::Object0) => {
                let key = r.be(2)?;
                if key == 0 {
                    // rml_amf0 requires the end marker here, and so do we.
                    (r.u8()? == m0::OBJECT_END).then_some(())?;
                    self.stack.pop();
                    return Some(Step::More);
                }
                r.skip(u64::from(key))?;
                false
            }
            Some(Open::Strict0(left)) => {
                if *left == 0 {
                    self.stack.pop();
                    return Some(Step::More);
                }
                if r.data.get(r.pos) == Some(&m0::OBJECT_END) {
                    r.pos += 1;
                    self.stack.pop();
                    return Some(Step::More);
                }
                *left -= 1;
                false
            }
            Some(Open::Assoc3 { dense }) => {
                let dense = u64::from(*dense);
                if r.string3()? {
                    *self.stack.last_mut()? = Open::Values3 {
                        left: dense,
                        dynamic: false,
                    };
                    return Some(Step::More);
                }
                true
            }
            Some(Open::Values3 { left, dynamic }) => {
                if *left == 0 {
                    if *dynamic {
                        *self.stack.last_mut()? = Open::Dynamic3;
                    } else {
                        self.stack.pop();
                    }
                    return Some(Step::More);
                }
                *left -= 1;
                true
            }
            Some(Open::Dynamic3) => {
                if r.string3()? {
                    self.stack.pop();
                    return Some(Step::More);
                }
                true
            }
        };
        let opened = if amf3 {
            value3(r, &mut self.traits)?
        } else {
            value0(r, &mut self.traits)?
        };
        if let Some(open) = opened {
            if self.stack.len() >= limit {
                return Some(Step::TooDeep);
            }
            self.stack.push(open);
        }
        Some(Step::More)
    }
}

/// Reads one AMF0 value; returns the container it opens, if any.
fn value0(r: &mut Reader, traits: &mut Vec<(u32, bool)>) -> Option<Option<Open>> {
    let open = match r.u8()? {
        m0::NUMBER => r.skip(8).map(|_| None)?,
        m0::BOOLEAN => r.skip(1).map(|_| None)?,
        m0::STRING => {
            let n = r.be(2)?;
            r.skip(u64::from(n))?;
            None
        }
        m0::LONG_STRING | m0::XML_DOCUMENT => {
            let n = r.be(4)?;
            r.skip(u64::from(n))?;
            None
        }
        m0::NULL | m0::UNDEFINED | m0::UNSUPPORTED => None,
        m0::REFERENCE => r.skip(2).map(|_| None)?,
        m0::DATE => r.skip(10).map(|_| None)?,
        m0::OBJECT => Some(Open::Object0),
        m0::ECMA_ARRAY => r.skip(4).map(|_| Some(Open::Object0))?,
        m0::TYPED_OBJECT => {
            let n = r.be(2)?;
            r.skip(u64::from(n))?;
            Some(Open::Object0)
        }
        m0::STRICT_ARRAY => Some(Open::Strict0(r.be(4)?)),
        m0::AVMPLUS => {
            // One AMF3 value follows, with reference tables of its own.
            traits.clear();
            return value3(r, traits);
        }
        _ => return None, // A stray end marker or an unknown type: decoders fail here.
    };
    Some(open)
}

/// Reads one AMF3 value; returns the container it opens, if any.
fn value3(r: &mut Reader, traits: &mut Vec<(u32, bool)>) -> Option<Option<Open>> {
    let marker = r.u8()?;
    let open = match marker {
        0x00..=0x03 => None,
        m3::INTEGER => r.u29().map(|_| None)?,
        m3::DOUBLE => r.skip(8).map(|_| None)?,
        m3::STRING => r.string3().map(|_| None)?,
        m3::XML_DOC | m3::XML | m3::BYTE_ARRAY => {
            let h = r.u29()?;
            if h & 1 == 1 {
                r.skip(u64::from(h >> 1))?;
            }
            None
        }
        m3::DATE => {
            if r.u29()? & 1 == 1 {
                r.skip(8)?;
            }
            None
        }
        m3::ARRAY => {
            let h = r.u29()?;
            (h & 1 == 1).then_some(Open::Assoc3 { dense: h >> 1 })
        }
        m3::OBJECT => {
            let h = r.u29()?;
            if h & 1 == 0 {
                return Some(None); // A reference to an earlier object.
            }
            let (sealed, dynamic) = if h & 2 == 0 {
                *traits.get((h >> 2) as usize)?
            } else if h & 4 != 0 {
                return None; // Externalizable: only its class knows its encoding.
            } else {
                r.string3()?; // Class name.
                let t = (h >> 4, h & 8 != 0);
                for _ in 0..t.0 {
                    r.string3()?;
                }
                traits.push(t);
                t
            };
            Some(Open::Values3 {
                left: u64::from(sealed),
                dynamic,
            })
        }
        m3::VECTOR_INT | m3::VECTOR_UINT | m3::VECTOR_DOUBLE => {
            let h = r.u29()?;
            if h & 1 == 1 {
                let item = if marker == m3::VECTOR_DOUBLE { 8 } else { 4 };
                r.skip(1 + u64::from(h >> 1) * item)?;
            }
            None
        }
        m3::VECTOR_OBJECT => {
            let h = r.u29()?;
            if h & 1 == 0 {
                return Some(None);
            }
            r.skip(1)?; // fixed-length flag
            r.string3()?; // object type name
            Some(Open::Values3 {
                left: u64::from(h >> 1),
                dynamic: false,
            })
        }
        m3::DICTIONARY => {
            let h = r.u29()?;
            if h & 1 == 0 {
                return Some(None);
            }
            r.skip(1)?; // weak-keys flag
            Some(Open::Values3 {
                left: 2 * u64::from(h >> 1),
                dynamic: false,
            })
        }
        _ => return None,
    };
    Some(open)
}

/// Container types, for building nested values in tests and fuzzing.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// AMF0 object.
    Object0,
    /// AMF0 ECMA array.
    Ecma0,
    /// AMF0 strict array.
    Strict0,
    /// AMF0 typed object.
    Typed0,
    /// AMF3 array (one dense item).
    Array3,
    /// AMF3 object with one dynamic member.
    Dynamic3,
    /// AMF3 object with one sealed member; inner levels reuse its traits by reference.
    Sealed3,
    /// AMF3 object vector.
    Vector3,
    /// AMF3 dictionary.
    Dictionary3,
}

impl Container {
    /// Every container type.
    pub const ALL: [Container; 9] = [
        Container::Object0,
        Container::Ecma0,
        Container::Strict0,
        Container::Typed0,
        Container::Array3,
        Container::Dynamic3,
        Container::Sealed3,
        Container::Vector3,
        Container::Dictionary3,
    ];
}

/// One value nested `depth` containers of `kind` deep, with a number inside
/// (an AMF3 one behind the AMF0 switch marker for the AMF3 kinds).
#[doc(hidden)]
pub fn nested(kind: Container, depth: usize) -> Vec<u8> {
    use Container::*;
    let amf3 = !matches!(kind, Object0 | Ecma0 | Strict0 | Typed0);
    let (suffix, leaf): (&[u8], &[u8]) = match kind {
        Object0 | Ecma0 | Typed0 => (
            &[0, 0, m0::OBJECT_END],
            &[m0::NUMBER, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        Strict0 => (&[], &[m0::NUMBER, 0, 0, 0, 0, 0, 0, 0, 0]),
        Dynamic3 => (&[0x01], &[m3::INTEGER, 7]),
        _ => (&[], &[m3::INTEGER, 7]),
    };
    let mut out = Vec::with_capacity(depth * 8 + 16);
    if amf3 {
        out.push(m0::AVMPLUS);
    }
    for level in 0..depth {
        out.extend_from_slice(match kind {
            Object0 => &[m0::OBJECT, 0, 1, b'a'],
            Ecma0 => &[m0::ECMA_ARRAY, 0, 0, 0, 1, 0, 1, b'a'],
            Strict0 => &[m0::STRICT_ARRAY, 0, 0, 0, 1],
            Typed0 => &[m0::TYPED_OBJECT, 0, 1, b'T', 0, 1, b'a'],
            // Dense count 1, no associative members.
            Array3 => &[m3::ARRAY, 0x03, 0x01],
            // Inline traits, dynamic, no sealed members, anonymous; key "a".
            Dynamic3 => &[m3::OBJECT, 0x0B, 0x01, 0x03, b'a'],
            // Inline traits with one sealed member "a", then references to them.
            Sealed3 if level == 0 => &[m3::OBJECT, 0x13, 0x01, 0x03, b'a'],
            Sealed3 => &[m3::OBJECT, 0x01],
            // One item, not fixed, anonymous type.
            Vector3 => &[m3::VECTOR_OBJECT, 0x03, 0x00, 0x01],
            // One pair, strong keys, key "k".
            Dictionary3 => &[m3::DICTIONARY, 0x03, 0x00, m3::STRING, 0x03, b'k'],
        });
    }
    out.extend_from_slice(leaf);
    for _ in 0..depth {
        out.extend_from_slice(suffix);
    }
    out
}

/// A `connect` command (AMF0 name, transaction id) whose command object is
/// `object`, for tests and fuzzing.
#[doc(hidden)]
pub fn connect_command(object: &[u8]) -> Vec<u8> {
    let mut out = vec![m0::STRING, 0, 7];
    out.extend_from_slice(b"connect");
    out.extend_from_slice(&[m0::NUMBER, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(object);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_type_is_refused_one_level_past_the_limit() {
        for kind in Container::ALL {
            for depth in [0, 1, 2, 63, 64] {
                assert_eq!(
                    check_depth(&nested(kind, depth), 64),
                    Ok(()),
                    "{kind:?} {depth}"
                );
            }
            for depth in [65, 1000, 100_000] {
                assert_eq!(
                    check_depth(&nested(kind, depth), 64),
                    Err(TooDeep { limit: 64 }),
                    "{kind:?} {depth}"
                );
            }
        }
    }

    #[test]
    fn a_value_cut_short_is_refused_once_its_open_containers_pass_the_limit() {
        let limit = 8;
        for kind in Container::ALL {
            let whole = nested(kind, 12);
            let mut refused_from = None;
            for cut in 0..=whole.len() {
                let r = check_depth(&whole[..cut], limit);
                match (r, refused_from) {
                    (Err(_), None) => refused_from = Some(cut),
                    (Ok(()), Some(at)) => panic!("{kind:?}: refused at {at}, not at {cut}"),
                    _ => {}
                }
            }
            // Refused exactly when the ninth container opens: the bytes that
            // `whole` shares with a value 8 (9) deep are its first 8 (9) levels.
            let common = |d| {
                let other = nested(kind, d);
                whole.iter().zip(&other).take_while(|(a, b)| a == b).count()
            };
            assert_eq!(check_depth(&whole[..common(8)], limit), Ok(()), "{kind:?}");
            assert!(check_depth(&whole[..common(9)], limit).is_err(), "{kind:?}");
            assert!(refused_from.is_some_and(|at| at <= common(9)), "{kind:?}");
        }
    }

    #[test]
    fn flat_messages_and_siblings_do_not_add_up() {
        // connect: name, transaction id, command object with a nested object.
        let mut connect = vec![m0::STRING, 0, 7];
        connect.extend_from_slice(b"connect");
        connect.extend_from_slice(&[m0::NUMBER, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
        for _ in 0..1000 {
            connect.extend_from_slice(&nested(Container::Object0, 3));
        }
        assert_eq!(check_depth(&connect, 3), Ok(()));
        assert_eq!(check_depth(&connect, 2), Err(TooDeep { limit: 2 }));
    }

    #[test]
    fn malformed_input_stops_the_walk_without_error() {
        for body in [
            &[0xFFu8][..],
            &[m0::OBJECT, 0, 0, 0x07],
            &[m0::AVMPLUS, m3::OBJECT, 0x07],
            &[m0::AVMPLUS, m3::OBJECT, 0x05],
            &[m0::STRICT_ARRAY, 0xFF, 0xFF, 0xFF, 0xFF],
        ] {
            assert_eq!(check_depth(body, 1), Ok(()), "{body:?}");
        }
    }
}
