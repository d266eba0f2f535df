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

use burnrate_otlp::{DecodeError, Decoded, Decoder, PayloadHint};
use crossbeam_channel::{Receiver, Sender};

use crate::budget::Reservation;

/// Exports queued for the workers, per worker: enough to keep each busy between the submitter's
/// turns, few enough that the queue holds little (the memory budget bounds it anyway).
const QUEUE_PER_WORKER: usize = 64;

/// One decoded export, with its bytes when they could not be decoded (they become a dead
/// letter; a decoded export's bytes are freed on the worker).
pub struct Decoding {
    pub result: Result<Decoded, DecodeError>,
    pub undecodable: Option<Vec<u8>>,
    /// The export's size as received.
    pub bytes: usize,
    /// The submitter's reservation, resized on the worker to what the result holds: its
    /// batches' memory, or the undecodable bytes.
    pub held: Reservation,
}

/// A submitted export's result, to be collected in submission order.
pub struct Pending(Receiver<Decoding>);

impl Pending {
    /// Waits for the worker. `None` only if the pool is gone (a worker panicked).
    pub fn wait(self) -> Option<Decoding> {
        self.0.recv().ok()
    }
}

struct Job {
    bytes: Vec<u8>,
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

    /// Queues `bytes` for decoding; waits only while the queue is full. `held` is what the
    /// caller reserved for them.
    pub fn submit(&self, bytes: Vec<u8>, hint: PayloadHint, held: Reservation) -> Pending {
        let (reply, result) = crossbeam_channel::bounded(1);
        let job = Job {
            bytes,
            hint,
            held,
            reply,
        };
        if let Some(jobs) = &self.jobs
            && let Err(crossbeam_channel::SendError(job)) = jobs.send(job)
        {
            // Every worker is gone (one panicked): decode here rather than lose the export.
            job.run(&self.decoder);
        }
        Pending(result)
    }
}

impl Job {
    fn run(mut self, decoder: &Decoder) {
        let bytes = self.bytes.len();
        let result = decoder.decode(&self.bytes, self.hint);
        self.held.resize(match &result {
            Ok(decoded) => decoded
                .batches
                .iter()
                .map(|(_, batch)| batch.get_array_memory_size())
                .sum(),
            Err(_) => bytes,
        });
        let undecodable = result.is_err().then_some(self.bytes);
        // The collector may have given up (the pipeline stopped on an error): nothing to do.
        let _ = self.reply.send(Decoding {
            result,
            undecodable,
            bytes,
            held: self.held,
        });
    }
}

fn work(decoder: &Decoder, queue: &Receiver<Job>) {
    for job in queue {
        job.run(decoder);
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
    fn results_come_back_in_submission_order_with_bad_bytes_kept() {
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
        let pending: Vec<_> = (0..200)
            .map(|i| {
                let bytes = if i % 7 == 0 {
                    b"{not json".to_vec()
                } else {
                    logs(&format!("record {i}"))
                };
                let mut held = budget.reservation();
                held.force(bytes.len());
                pool.submit(bytes, hint, held)
            })
            .collect();
        for (i, pending) in pending.into_iter().enumerate() {
            let decoding = pending.wait().unwrap();
            if i % 7 == 0 {
                assert!(decoding.result.is_err());
                assert_eq!(decoding.held.bytes(), b"{not json".len());
                assert_eq!(decoding.undecodable.as_deref(), Some(&b"{not json"[..]));
                continue;
            }
            let decoded = decoding.result.unwrap();
            let memory: usize = decoded
                .batches
                .iter()
                .map(|(_, b)| b.get_array_memory_size())
                .sum();
            assert_eq!(
                decoding.held.bytes(),
                memory,
                "the reservation follows the rows"
            );
            assert!(decoding.undecodable.is_none());
            let batch = decoded.batch(Table::LogRecords).unwrap();
            let body = batch
                .column_by_name("body")
                .unwrap()
                .as_any()
                .downcast_ref::<datafusion::arrow::array::StringArray>()
                .unwrap();
            assert_eq!(body.value(0), format!("record {i}"));
        }
    }
}
