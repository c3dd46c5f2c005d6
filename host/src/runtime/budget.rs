//! The host-side budget of one input: how much a plugin may stage in host memory.
//!
//! Staged messages, state writes, recorded reads and log text live in host memory, outside
//! the plugin's linear-memory limit. Each input gets a budget for them, so the host's memory
//! is bounded by `concurrency × budget` plus a fixed overhead whatever its plugins do. Going
//! over fails the input with [`BudgetExceeded`], which names the budget and its config key.

/// Limits on what one input may stage in host memory (`limits` of a plugin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Messages staged through `outbox.send` (`outbox_messages`).
    pub outbox_messages: usize,
    /// Bytes of staged messages: keys, values and headers (`outbox_kib`).
    pub outbox_bytes: usize,
    /// Staged state writes and deletes (`state_writes`).
    pub state_writes: usize,
    /// Bytes of staged state writes: keys and values (`state_write_kib`).
    pub state_write_bytes: usize,
    /// Bytes returned by `state.get` and `state.scan`, kept to detect conflicts (`state_read_kib`).
    pub state_read_bytes: usize,
    /// Bytes written through the `log` import (`log_kib`).
    pub log_bytes: usize,
    /// Bytes of an HTTP response: body and headers (`response_kib`).
    pub response_bytes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            outbox_messages: 1000,
            outbox_bytes: 2 << 20,
            state_writes: 1000,
            state_write_bytes: 2 << 20,
            state_read_bytes: 4 << 20,
            log_bytes: 64 << 10,
            response_bytes: 2 << 20,
        }
    }
}

impl Budget {
    /// The most host memory one input can hold through its budget, in bytes.
    pub fn total_bytes(&self) -> usize {
        self.outbox_bytes
            + self.state_write_bytes
            + self.state_read_bytes
            + self.log_bytes
            + self.response_bytes
    }
}

/// Which budget an input went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetKind {
    /// `limits.outbox_messages`.
    OutboxMessages,
    /// `limits.outbox_kib`.
    OutboxBytes,
    /// `limits.state_writes`.
    StateWrites,
    /// `limits.state_write_kib`.
    StateWriteBytes,
    /// `limits.state_read_kib`.
    StateReadBytes,
    /// `limits.log_kib`.
    LogBytes,
    /// `limits.response_kib`.
    ResponseBytes,
}

impl BudgetKind {
    /// The config key that sets this budget.
    pub fn key(self) -> &'static str {
        match self {
            BudgetKind::OutboxMessages => "outbox_messages",
            BudgetKind::OutboxBytes => "outbox_kib",
            BudgetKind::StateWrites => "state_writes",
            BudgetKind::StateWriteBytes => "state_write_kib",
            BudgetKind::StateReadBytes => "state_read_kib",
            BudgetKind::LogBytes => "log_kib",
            BudgetKind::ResponseBytes => "response_kib",
        }
    }

    fn what(self) -> &'static str {
        match self {
            BudgetKind::OutboxMessages => "messages sent",
            BudgetKind::OutboxBytes => "bytes of messages sent",
            BudgetKind::StateWrites => "state writes",
            BudgetKind::StateWriteBytes => "bytes of state writes",
            BudgetKind::StateReadBytes => "bytes of state read",
            BudgetKind::LogBytes => "bytes logged",
            BudgetKind::ResponseBytes => "bytes of response",
        }
    }

    fn counts_bytes(self) -> bool {
        !matches!(self, BudgetKind::OutboxMessages | BudgetKind::StateWrites)
    }
}

/// An input went over one of its budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct BudgetExceeded {
    /// Which budget.
    pub kind: BudgetKind,
    /// Its limit (bytes or a count).
    pub limit: usize,
}

impl BudgetExceeded {
    fn describe(&self) -> String {
        let limit = if self.kind.counts_bytes() {
            format!("{} KiB", self.limit >> 10)
        } else {
            self.limit.to_string()
        };
        format!(
            "over its budget of {limit} {} per input (limits.{})",
            self.kind.what(),
            self.kind.key()
        )
    }
}

/// What one input has used of its budget so far.
#[derive(Debug, Default)]
pub(super) struct Usage {
    outbox_messages: usize,
    outbox_bytes: usize,
    state_writes: usize,
    state_write_bytes: usize,
    state_read_bytes: usize,
    log_bytes: usize,
}

impl Usage {
    /// Adds `amount` to the counter of `kind`, or fails without changing it when that would
    /// go over `budget`.
    pub(super) fn spend(
        &mut self,
        budget: &Budget,
        kind: BudgetKind,
        amount: usize,
    ) -> Result<(), BudgetExceeded> {
        let (used, limit) = match kind {
            BudgetKind::OutboxMessages => (&mut self.outbox_messages, budget.outbox_messages),
            BudgetKind::OutboxBytes => (&mut self.outbox_bytes, budget.outbox_bytes),
            BudgetKind::StateWrites => (&mut self.state_writes, budget.state_writes),
            BudgetKind::StateWriteBytes => (&mut self.state_write_bytes, budget.state_write_bytes),
            BudgetKind::StateReadBytes => (&mut self.state_read_bytes, budget.state_read_bytes),
            BudgetKind::LogBytes => (&mut self.log_bytes, budget.log_bytes),
            BudgetKind::ResponseBytes => return check(kind, amount, budget.response_bytes),
        };
        let total = used.saturating_add(amount);
        check(kind, total, limit)?;
        *used = total;
        Ok(())
    }
}

/// Fails when `amount` is over `limit`.
pub(super) fn check(kind: BudgetKind, amount: usize, limit: usize) -> Result<(), BudgetExceeded> {
    if amount > limit {
        return Err(BudgetExceeded { kind, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_stops_at_the_limit_and_names_the_key() {
        let budget = Budget {
            outbox_bytes: 10 << 10,
            ..Budget::default()
        };
        let mut usage = Usage::default();
        usage
            .spend(&budget, BudgetKind::OutboxBytes, 6 << 10)
            .unwrap();
        let over = usage
            .spend(&budget, BudgetKind::OutboxBytes, 5 << 10)
            .unwrap_err();
        assert_eq!(
            over.to_string(),
            "over its budget of 10 KiB bytes of messages sent per input (limits.outbox_kib)"
        );
        // A refused amount is not counted: what still fits, fits.
        usage
            .spend(&budget, BudgetKind::OutboxBytes, 4 << 10)
            .unwrap();
    }

    #[test]
    fn counts_are_counts() {
        let budget = Budget {
            state_writes: 2,
            ..Budget::default()
        };
        let mut usage = Usage::default();
        usage.spend(&budget, BudgetKind::StateWrites, 1).unwrap();
        usage.spend(&budget, BudgetKind::StateWrites, 1).unwrap();
        let over = usage
            .spend(&budget, BudgetKind::StateWrites, 1)
            .unwrap_err();
        assert_eq!(
            over.to_string(),
            "over its budget of 2 state writes per input (limits.state_writes)"
        );
    }
}
