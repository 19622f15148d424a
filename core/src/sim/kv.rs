//! The replicated key-value store that simulated clients use.

use std::collections::BTreeMap;

/// Encodes `put(key, value)` as a log command.
pub fn encode_put(key: u8, value: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(9);
    b.push(key);
    b.extend_from_slice(&value.to_le_bytes());
    b
}

/// Decodes a command made by [`encode_put`].
pub fn decode_put(cmd: &[u8]) -> Option<(u8, u64)> {
    if cmd.len() != 9 {
        return None;
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&cmd[1..]);
    Some((cmd[0], u64::from_le_bytes(v)))
}

/// Encodes a put's response: the value it replaced (empty: none).
pub fn encode_value(value: Option<u64>) -> Vec<u8> {
    value.map_or_else(Vec::new, |v| v.to_le_bytes().to_vec())
}

/// Decodes a response made by [`encode_value`] (anything else: `None`).
pub fn decode_value(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// A key-value map built by applying put commands in log order.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KvStore {
    map: BTreeMap<u8, u64>,
}

impl KvStore {
    /// Applies one command and returns the value the put replaced (`None`:
    /// the key was absent, or the bytes were not a put, which is ignored).
    pub fn apply(&mut self, cmd: &[u8]) -> Option<u64> {
        let (k, v) = decode_put(cmd)?;
        self.map.insert(k, v)
    }

    /// The value of `key`.
    pub fn get(&self, key: u8) -> Option<u64> {
        self.map.get(&key).copied()
    }
}
