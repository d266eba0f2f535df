//! The decode stage: OTLP exports → Arrow batches on a pool of worker threads, one per core,
//! each result collected in the order its export was submitted.
//!
//! Decoding is pure (the same bytes give the same batches), so exports of any partition may be
//! decoded side by side; what depends on order, the cumulative-metric state and the segments,
//! stays with the sink that collects the results one by one.
//!
//! Owns: the worker threads and their queue. Must not know: where the bytes came from, when
//! they are committed, or where the rows go.

use std::thread::JoinHandle;

use burnrate_otlp::{DecodeError, Decoded, Decoder, PayloadHint, RunRoom, TableBuilders};
use crossbeam_channel::{Receiver, Sender};

use crate::budget::Reservation;

/// Runs queued for the workers, per worker: enough to keep each busy between the submitter's
/// turns, few enough that the queue holds little (the memory budget bounds it anyway).
const QUEUE_PER_WORKER: usize = 8;

/// An export that could not be decoded, kept whole for its dead letter.
pub struct Undecodable {
    /// What the submitter named the export by (a Kafka offset, an export's number in its file).
    pub id: i64,
    pub error: DecodeError,
    pub bytes: Vec<u8>,
}

/// A decoded run of exports: their rows as one batch per table, and the exports that could
/// not be decoded. A decoded export's bytes are freed on the worker.
pub struct Decoding {
    pub decoded: Option<Decoded>,
    pub undecodable: Vec<Undecodable>,
    /// Per export, in submission order: its rows written with an unparsable value (0 for an
    /// undecodable one). A receiver answers each request with its own count.
    pub rows_with_errors: Vec<u64>,
    /// Exports in the run, and their size as received.
    pub exports: usize,
    pub bytes: usize,
    /// The submitter's reservation, resized on the worker to what the result holds: the
    /// batches' memory and the undecodable bytes.
    pub held: Reservation,
}

/// A submitted run's result, to be collected in submission order.
pub struct Pending(Receiver<Decoding>);

impl Pending {
    /// Waits for the worker. `None` only if the pool is gone (a worker panicked).
    pub fn wait(self) -> Option<Decoding> {
        self.0.recv().ok()
    }
}

struct Job {
    exports: Vec<(i64, Vec<u8>)>,
    hint: PayloadHint,
    held: Reservation,
    reply: Sender<Decoding>,
}

/// Worker threads decoding exports with one [`Decoder`].
pub struct DecodePool {
    decoder: Decoder,
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl DecodePool {
    /// `threads` workers; 0 means one per core.
    pub fn new(decoder: Decoder, threads: usize) -> std::io::Result<Self> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(threads * QUEUE_PER_WORKER);
        let workers = (0..threads)
            .map(|i| {
                let (queue, decoder) = (queue.clone(), decoder.clone());
                std::thread::Builder::new()
                    .name(format!("burnrate-decode-{i}"))
                    .spawn(move || work(&decoder, &queue))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(DecodePool {
            decoder,
            jobs: Some(jobs),
            workers,
        })
    }

    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Queues a run of exports (each with the caller's id for it) to be decoded onto one set
    /// of builders: many small exports cost one batch per table, not one each. Waits only
    /// while the queue is full. `held` is what the caller reserved for the bytes.
    pub fn submit(
        &self,
        exports: Vec<(i64, Vec<u8>)>,
        hint: PayloadHint,
        held: Reservation,
    ) -> Pending {
        let (reply, result) = crossbeam_channel::bounded(1);
        let job = Job {
            exports,
            hint,
            held,
            reply,
        };
        if let Some(jobs) = &self.jobs
            && let Err(crossbeam_channel::SendError(job)) = jobs.send(job)
        {
            // Every worker is gone (one panicked): decode here rather than lose the exports.
            job.run(&self.decoder, &mut RunRoom::default());
        }
        Pending(result)
    }
}

impl Job {
    /// Decodes the run with room for what `room` learnt from the worker's runs before, and
    /// teaches it this one.
    fn run(mut self, decoder: &Decoder, room: &mut RunRoom) {
        let exports = self.exports.len();
        let bytes = self.exports.iter().map(|(_, b)| b.len()).sum();
        let (decoded, undecodable, rows_with_errors) =
            decode_run(decoder, room.for_run(bytes), self.exports, self.hint);
        if let Some(decoded) = &decoded {
            room.learn(&decoded.batches, bytes);
        }
        self.held.resize(
            decoded.as_ref().map_or(0, |d| {
                d.batches
                    .iter()
                    .map(|(_, batch)| batch.get_array_memory_size())
                    .sum()
            }) + undecodable.iter().map(|u| u.bytes.len()).sum::<usize>(),
        );
        // The collector may have given up (the pipeline stopped on an error): nothing to do.
        let _ = self.reply.send(Decoding {
            decoded,
            undecodable,
            rows_with_errors,
            exports,
            bytes,
            held: self.held,
        });
    }
}

/// Decodes every export onto one set of builders. Should the batches not build (a bug, not
/// bad input: appending cannot fail), each export is decoded alone so only the one at fault
/// becomes a dead letter. Returns each export's rows with errors too, in submission order.
fn decode_run(
    decoder: &Decoder,
    room: RunRoom,
    exports: Vec<(i64, Vec<u8>)>,
    hint: PayloadHint,
) -> (Option<Decoded>, Vec<Undecodable>, Vec<u64>) {
    let mut builders = TableBuilders::with_room(room);
    let mut undecodable = Vec::new();
    let mut rows_with_errors = vec![0; exports.len()];
    let mut decoded_exports = Vec::with_capacity(exports.len());
    for (position, (id, bytes)) in exports.into_iter().enumerate() {
        let before = builders.stats().rows_with_errors;
        match decoder.decode_into(&bytes, hint, &mut builders) {
            Ok(()) => {
                rows_with_errors[position] = builders.stats().rows_with_errors - before;
                decoded_exports.push((position, id, bytes));
            }
            Err(error) => undecodable.push(Undecodable { id, error, bytes }),
        }
    }
    if builders.is_empty() {
        return (None, undecodable, rows_with_errors);
    }
    match builders.finish() {
        Ok(decoded) => (Some(decoded), undecodable, rows_with_errors),
        Err(error) => {
            tracing::warn!(error = %error, "a run of exports did not build; decoding them one by one");
            let mut alone = Decoded::default();
            for (position, id, bytes) in decoded_exports {
                match decoder.decode(&bytes, hint) {
                    Ok(decoded) => {
                        rows_with_errors[position] = decoded.stats.rows_with_errors;
                        alone.batches.extend(decoded.batches);
                        alone.stats.merge(&decoded.stats);
                        alone.plain_bytes += decoded.plain_bytes;
                    }
                    Err(error) => {
                        rows_with_errors[position] = 0;
                        undecodable.push(Undecodable { id, error, bytes });
                    }
                }
            }
            undecodable.sort_by_key(|u| u.id);
            (Some(alone), undecodable, rows_with_errors)
        }
    }
}

fn work(decoder: &Decoder, queue: &Receiver<Job>) {
    let mut room = RunRoom::default();
    for job in queue {
        job.run(decoder, &mut room);
    }
}

impl Drop for DecodePool {
    fn drop(&mut self) {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use burnrate_otlp::{Encoding, MappingConfig, Signal, Table};
    use burnrate_pricing::PriceTable;

    use super::*;

    fn logs(body: &str) -> Vec<u8> {
        format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"timeUnixNano":"1","body":{{"stringValue":"{body}"}}}}]}}]}}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn runs_come_back_in_submission_order_with_bad_exports_kept() {
        let budget = crate::MemoryBudget::for_memory_limit(1 << 30);
        let pool = DecodePool::new(
            Decoder::new(MappingConfig::default(), PriceTable::embedded()),
            3,
        )
        .unwrap();
        assert_eq!(pool.threads(), 3);
        let hint = PayloadHint {
            encoding: Some(Encoding::Json),
            signal: Some(Signal::Logs),
            ..PayloadHint::default()
        };
        let pending: Vec<_> = (0..50)
            .map(|run| {
                let exports: Vec<(i64, Vec<u8>)> = (0..4)
                    .map(|i| {
                        let id = run * 4 + i;
                        let bytes = if id % 7 == 0 {
                            b"{not json".to_vec()
                        } else {
                            logs(&format!("record {id}"))
                        };
                        (id, bytes)
                    })
                    .collect();
                let mut held = budget.reservation();
                held.force(exports.iter().map(|(_, b)| b.len()).sum());
                pool.submit(exports, hint, held)
            })
            .collect();
        for (run, pending) in pending.into_iter().enumerate() {
            let decoding = pending.wait().unwrap();
            assert_eq!(decoding.exports, 4);
            let ids: Vec<i64> = (0..4).map(|i| run as i64 * 4 + i).collect();
            let bad: Vec<i64> = ids.iter().copied().filter(|id| id % 7 == 0).collect();
            let undecodable: Vec<i64> = decoding.undecodable.iter().map(|u| u.id).collect();
            assert_eq!(undecodable, bad);
            assert!(decoding.undecodable.iter().all(|u| u.bytes == b"{not json"));
            let decoded = decoding.decoded.unwrap();
            let batch = decoded.batch(Table::LogRecords).unwrap();
            let body = batch
                .column_by_name("body")
                .unwrap()
                .as_any()
                .downcast_ref::<datafusion::arrow::array::StringArray>()
                .unwrap();
            let good: Vec<String> = ids
                .iter()
                .filter(|id| *id % 7 != 0)
                .map(|id| format!("record {id}"))
                .collect();
            let bodies: Vec<&str> = body.iter().map(|b| b.unwrap()).collect();
            assert_eq!(bodies, good, "rows in submission order");
            let memory: usize = decoded
                .batches
                .iter()
                .map(|(_, b)| b.get_array_memory_size())
                .sum();
            assert_eq!(
                decoding.held.bytes(),
                memory + bad.len() * b"{not json".len(),
                "the reservation follows what the result holds"
            );
        }
    }
}
