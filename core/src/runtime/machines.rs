//! Small state machines for examples, tests and benchmarks.

use super::StateMachine;
use crate::types::Index;

/// Counts the commands it applied; answers each with the new count as
/// 8 little-endian bytes.
#[derive(Debug, Default, Clone)]
pub struct CounterMachine {
    /// Commands applied so far.
    pub count: u64,
    /// Index of the last command applied.
    pub last_index: Index,
}

impl StateMachine for CounterMachine {
    fn apply(&mut self, index: Index, _command: &[u8]) -> Vec<u8> {
        self.count += 1;
        self.last_index = index;
        self.count.to_le_bytes().to_vec()
    }

    /// The count, 8 little-endian bytes.
    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(self.count.to_le_bytes().to_vec())
    }

    fn restore(&mut self, index: Index, data: &[u8]) -> Result<(), String> {
        let count = data
            .try_into()
            .map_err(|_| format!("a counter snapshot is 8 bytes, got {}", data.len()))?;
        self.count = u64::from_le_bytes(count);
        self.last_index = index;
        Ok(())
    }
}

/// Ignores commands and answers with empty bytes (for benchmarks).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullMachine;

impl StateMachine for NullMachine {
    fn apply(&mut self, _index: Index, _command: &[u8]) -> Vec<u8> {
        Vec::new()
    }

    /// Empty: there is no state.
    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(Vec::new())
    }

    fn restore(&mut self, _index: Index, _data: &[u8]) -> Result<(), String> {
        Ok(())
    }
}
