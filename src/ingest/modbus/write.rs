//! A Modbus station's commands: each one the control task hands its poller is written to the
//! map's coils and holding registers at once, retried on the next cycles while it is young enough, and
//! counted (and stored) as delivered only when the device confirmed every write.

use std::sync::atomic::Ordering;

use tokio_modbus::client::Writer;
use tracing::warn;

use super::link::Failure;
use super::map::{Table, WriteRun};
use super::poller::Poller;
use crate::store::record::Record;

impl Poller {
    /// Writes the pending command; on success it counts as delivered (and acknowledged).
    pub(super) async fn write(&mut self) {
        let Some(cmd) = self.pending.clone() else {
            return;
        };
        if !self.slot.may_command() {
            // In a cluster: the lead is gone or its fence ran out (a stalled instance waking).
            self.pending = None;
            return;
        }
        let age_ms = crate::clock::now_ms() - cmd.ts;
        if age_ms > self.retry_for.as_millis() as i64 {
            warn!(station = %self.cfg.station, seq = cmd.seq, age_ms,
                "Command could not be written in time; dropped undelivered.");
            self.pending = None;
            return;
        }
        let runs = match self.cfg.map.write_plan(|f| cmd.field_value(f)) {
            Ok(r) => r,
            Err(e) => {
                // Not retryable: the same values would fail again.
                self.counters.write_failures.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .modbus_write_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.stats.commands_failed.fetch_add(1, Ordering::Relaxed);
                warn!(station = %self.cfg.station, seq = cmd.seq, error = %e,
                    "Command does not fit the register map; not written.");
                *self
                    .slot
                    .ack_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(format!("seq {}: {e}", cmd.seq));
                self.pending = None;
                return;
            }
        };
        let reused = self.ctx.is_some();
        let mut result = self.write_all(&runs).await;
        // As for polls: a connection the PLC closed while idle is replaced at once, once.
        if reused && matches!(result, Err((_, Failure::Link(_)))) {
            self.counters.link_failures.fetch_add(1, Ordering::Relaxed);
            self.ctx = None;
            result = self.write_all(&runs).await;
        }
        match result {
            Ok(true) => {}
            Ok(false) => {
                self.write_failed();
                return;
            }
            Err((what, f)) => {
                self.failed(&what, f);
                self.write_failed();
                return;
            }
        }
        self.pending = None;
        self.counters.writes_ok.fetch_add(1, Ordering::Relaxed);
        self.stats.modbus_writes.fetch_add(1, Ordering::Relaxed);
        self.stats.commands_sent.fetch_add(1, Ordering::Relaxed);
        self.slot.acked_seq.fetch_max(cmd.seq, Ordering::Relaxed);
        *self
            .slot
            .ack_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        self.store.submit(&Record::Command {
            station: &self.cfg.station,
            tags: &self.slot.tags,
            command: &cmd,
        });
    }

    /// Writes every run on the open connection (connecting first if allowed). `Ok(false)`:
    /// no connection this time (backoff running or connect failed, recorded).
    async fn write_all(&mut self, runs: &[WriteRun]) -> Result<bool, (String, Failure)> {
        let timeout = self.wait();
        let single = self.cfg.map.write_function == super::map::WriteFunction::Single;
        let Some(ctx) = self.connection().await else {
            return Ok(false);
        };
        for run in runs {
            let (addr, words) = (run.address, &run.words);
            let reply = if run.table == Table::Coil {
                let on = words.first().is_some_and(|&w| w != 0);
                tokio::time::timeout(timeout, ctx.write_single_coil(addr, on)).await
            } else if single && words.len() == 1 {
                tokio::time::timeout(timeout, ctx.write_single_register(addr, words[0])).await
            } else {
                tokio::time::timeout(timeout, ctx.write_multiple_registers(addr, words)).await
            };
            let r = match reply {
                Err(_) => Err(Failure::Timeout),
                Ok(Err(e)) => Err(Failure::from_transport(e)),
                Ok(Ok(Err(exc))) => Err(Failure::Exception(format!("{exc:?}"))),
                Ok(Ok(Ok(()))) => Ok(()),
            };
            if let Err(f) = r {
                return Err((format!("write {:?} {addr}+{}", run.table, words.len()), f));
            }
        }
        Ok(true)
    }

    fn write_failed(&mut self) {
        self.counters.write_failures.fetch_add(1, Ordering::Relaxed);
        self.stats
            .modbus_write_failures
            .fetch_add(1, Ordering::Relaxed);
        self.stats.commands_failed.fetch_add(1, Ordering::Relaxed);
    }
}
