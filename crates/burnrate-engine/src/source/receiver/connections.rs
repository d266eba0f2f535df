//! The receiver's connections, accepted here rather than by axum or tonic so that one place
//! decides who gets in and how long they may hold a socket, for OTLP/HTTP and OTLP/gRPC alike:
//!
//! - **TLS** (optional, mutual with a client CA) before anything else is read.
//! - **A connection limit.** At the limit, a new connection closes the connection that has been
//!   idle longest (no request in progress: a keep-alive between exports, or a client that never
//!   finished its headers), so idle and slowloris connections cannot lock real clients out. Only
//!   when every connection is mid-request is the new one refused. The limit is also kept under
//!   the process's open-file limit, so sockets never starve the flushes of file descriptors.
//! - **Timeouts.** Headers must arrive within `header_timeout_ms`, a body within
//!   `body_timeout_ms` of its headers, and a connection with no request for `idle_timeout_ms` is
//!   closed.
//! - **Authentication.** With a token file, a request without a known bearer token is refused
//!   (401 / `UNAUTHENTICATED`) before its body is read.
//! - **Memory.** A body is reserved against the memory budget as it arrives; one that does not
//!   fit is cut off and answered 503 / `UNAVAILABLE`, which clients retry.
//!
//! Must not know: OTLP payloads or how they are stored.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prost::bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::auth::{AuthTokens, Grant, Refusal};
use crate::EngineError;
use crate::budget::{MemoryBudget, Reservation};
use crate::publish::health::PipelineHealth;

/// File descriptors kept for everything but client sockets: logs, Parquet files, the health
/// server, librdkafka.
const RESERVED_FILES: u64 = 64;
/// How long a connection asked to close (idle, evicted or shutting down) may take to finish
/// what it is doing before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What every connection of a listener is held to.
#[derive(Debug, Clone)]
pub(super) struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// `max_connections` per listener, lowered so that both listeners together stay under the
    /// process's open-file limit.
    pub(super) fn within_file_limit(mut self, listeners: u64) -> Self {
        if let Some(files) = open_file_limit() {
            let room = files.saturating_sub(RESERVED_FILES) / listeners.max(1);
            let room = room.max(1) as usize;
            if room < self.max_connections {
                tracing::warn!(
                    configured = self.max_connections,
                    open_file_limit = files,
                    max_connections = room,
                    "receiver connection limit lowered to fit the open-file limit"
                );
                self.max_connections = room;
            }
        }
        self
    }
}

fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given, which outlives the call.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Which protocol a listener speaks, for the answers given before the service sees a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Protocol {
    Http,
    Grpc,
}

/// What a listener's connections share.
pub(super) struct Gate {
    pub protocol: Protocol,
    pub limits: ConnectionLimits,
    pub tls: Option<TlsAcceptor>,
    pub auth: Option<Arc<AuthTokens>>,
    pub budget: Arc<MemoryBudget>,
    pub health: Arc<PipelineHealth>,
}

/// One request's share of the budget and what happened to its body, readable by the handler
/// (a request extension).
#[derive(Debug)]
pub(crate) struct InFlight {
    reservation: Mutex<Reservation>,
    over_budget: AtomicBool,
    timed_out: AtomicBool,
}

impl InFlight {
    /// Why the body stopped early, if the gate stopped it.
    pub(crate) fn cut_off(&self) -> Option<BodyCut> {
        if self.over_budget.load(Ordering::Relaxed) {
            Some(BodyCut::OverBudget)
        } else if self.timed_out.load(Ordering::Relaxed) {
            Some(BodyCut::TimedOut)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum BodyCut {
    OverBudget,
    TimedOut,
}

/// A request body read under the gate: reserved as it arrives, and cut at its deadline.
pub(crate) struct GuardedBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    in_flight: Arc<InFlight>,
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.in_flight.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err("request body not received in time".into())));
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            let fits = self
                .in_flight
                .reservation
                .lock()
                .is_ok_and(|mut reservation| reservation.try_grow(data.len()));
            if !fits {
                self.in_flight.over_budget.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err("the receiver's memory budget is full".into())));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection as the table of open connections sees it.
#[derive(Debug)]
struct Connection {
    requests_in_progress: AtomicUsize,
    /// Milliseconds since the table's epoch when the connection last started or ended a
    /// request (or was accepted).
    last_active: AtomicU64,
    closing: AtomicBool,
    close: Notify,
}

/// The open connections of one listener.
#[derive(Debug)]
struct ConnectionTable {
    epoch: Instant,
    max: usize,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
}

impl ConnectionTable {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A place for a new connection: free, or made by closing the connection idle longest.
    fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut open = self.open.lock().ok()?;
        let counted = open
            .values()
            .filter(|c| !c.closing.load(Ordering::Relaxed))
            .count();
        if counted >= self.max {
            let idlest = open
                .values()
                .filter(|c| {
                    !c.closing.load(Ordering::Relaxed)
                        && c.requests_in_progress.load(Ordering::Relaxed) == 0
                })
                .min_by_key(|c| c.last_active.load(Ordering::Relaxed))?;
            idlest.closing.store(true, Ordering::Relaxed);
            idlest.close.notify_one();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            requests_in_progress: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.now()),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        open.insert(id, connection.clone());
        Some(Admitted {
            table: self.clone(),
            id,
            connection,
        })
    }
}

/// A connection's place in the table, given up when the connection ends.
struct Admitted {
    table: Arc<ConnectionTable>,
    id: u64,
    connection: Arc<Connection>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut open) = self.table.open.lock() {
            open.remove(&self.id);
        }
    }
}

/// Marks a request in progress on its connection until dropped.
struct RequestInProgress {
    table: Arc<ConnectionTable>,
    connection: Arc<Connection>,
}

impl RequestInProgress {
    fn start(table: &Arc<ConnectionTable>, connection: &Arc<Connection>) -> Self {
        connection
            .requests_in_progress
            .fetch_add(1, Ordering::Relaxed);
        connection.last_active.store(table.now(), Ordering::Relaxed);
        RequestInProgress {
            table: table.clone(),
            connection: connection.clone(),
        }
    }
}

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        self.connection
            .last_active
            .store(self.table.now(), Ordering::Relaxed);
        self.connection
            .requests_in_progress
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections until `stop`, then asks each to finish; returns once all have. A
/// caller that cannot wait drops the future, which drops every connection.
pub(super) async fn serve<S>(
    listener: tokio::net::TcpListener,
    gate: Arc<Gate>,
    service: S,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), EngineError>
where
    S: tower::Service<Request<GuardedBody>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let table = Arc::new(ConnectionTable {
        epoch: Instant::now(),
        max: gate.limits.max_connections.max(1),
        next_id: AtomicU64::new(0),
        open: Mutex::new(BTreeMap::new()),
    });
    let (stopping, stopped) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors or a connection reset before accept: the
                        // listener itself is fine, so wait a moment and go on.
                        tracing::warn!(error = %error, "receiver accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(admitted) = table.admit() else {
                    gate.health.connection("refused");
                    drop(stream);
                    continue;
                };
                gate.health.connection("accepted");
                let _ = stream.set_nodelay(true);
                connections.spawn(connection(stream, admitted, gate.clone(), service.clone(), stopped.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let _ = stopping.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn connection<S>(
    stream: tokio::net::TcpStream,
    admitted: Admitted,
    gate: Arc<Gate>,
    service: S,
    stopped: watch::Receiver<bool>,
) where
    S: tower::Service<Request<GuardedBody>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    match gate.tls.clone() {
        None => serve_io(stream, admitted, gate, service, stopped).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(gate.limits.header_timeout, acceptor.accept(stream)).await;
            match handshake {
                Ok(Ok(tls)) => serve_io(tls, admitted, gate, service, stopped).await,
                Ok(Err(error)) => {
                    gate.health.connection("tls_failed");
                    tracing::debug!(error = %error, "TLS handshake failed");
                }
                Err(_) => gate.health.connection("tls_failed"),
            }
        }
    }
}

async fn serve_io<I, S>(
    io: I,
    admitted: Admitted,
    gate: Arc<Gate>,
    service: S,
    mut stopped: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<GuardedBody>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let table = admitted.table.clone();
    let this = admitted.connection.clone();
    let handler = {
        let gate = gate.clone();
        let table = table.clone();
        let this = this.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let in_progress = RequestInProgress::start(&table, &this);
            let gate = gate.clone();
            let service = service.clone();
            async move {
                let response = handle(request, &gate, service).await;
                drop(in_progress);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(gate.limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let served = builder.serve_connection(TokioIo::new(io), handler);
    tokio::pin!(served);

    let idle_timeout = gate.limits.idle_timeout;
    let idle_check = (idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(idle_check);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let closing = loop {
        tokio::select! {
            _ = &mut served => return,
            _ = this.close.notified() => {
                gate.health.connection("evicted");
                break true;
            }
            _ = stopped.wait_for(|stop| *stop) => break false,
            _ = ticks.tick() => {
                let idle_for = table.now().saturating_sub(this.last_active.load(Ordering::Relaxed));
                if this.requests_in_progress.load(Ordering::Relaxed) == 0
                    && Duration::from_millis(idle_for) >= idle_timeout
                {
                    gate.health.connection("idle_closed");
                    break true;
                }
            }
        }
    };
    served.as_mut().graceful_shutdown();
    if closing {
        // An idle or evicted connection has no request to finish; one that will not close
        // cleanly (half-sent headers) is dropped.
        let _ = tokio::time::timeout(CLOSE_GRACE, served).await;
    } else {
        // Shutting down: the caller bounds how long requests in progress may take.
        let _ = served.await;
    }
    drop(admitted);
}

/// One request through the gate and on to the service.
async fn handle<S>(request: Request<Incoming>, gate: &Gate, service: S) -> Response<Body>
where
    S: tower::Service<Request<GuardedBody>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let grant = match &gate.auth {
        None => Grant::Any,
        Some(tokens) => {
            let header = request.headers().get(axum::http::header::AUTHORIZATION);
            match tokens.check(header.map(|value| value.as_bytes())) {
                Ok(grant) => grant,
                Err(refusal) => {
                    gate.health.request("unauthenticated");
                    return unauthenticated(gate.protocol, refusal, &request);
                }
            }
        }
    };
    let in_flight = Arc::new(InFlight {
        reservation: Mutex::new(gate.budget.reservation()),
        over_budget: AtomicBool::new(false),
        timed_out: AtomicBool::new(false),
    });
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(grant);
    parts.extensions.insert(in_flight.clone());
    let body = GuardedBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(gate.limits.body_timeout)),
        in_flight,
    };
    match service.oneshot(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn unauthenticated(
    protocol: Protocol,
    refusal: Refusal,
    request: &Request<Incoming>,
) -> Response<Body> {
    match protocol {
        Protocol::Grpc => {
            let (parts, body) = tonic::Status::unauthenticated(refusal.message())
                .into_http::<Body>()
                .into_parts();
            Response::from_parts(parts, body)
        }
        Protocol::Http => {
            let json = request
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
            let mut response = super::http::failure(
                axum::http::StatusCode::UNAUTHORIZED,
                super::http::UNAUTHENTICATED,
                refusal.message().to_string(),
                if json {
                    burnrate_otlp::Encoding::Json
                } else {
                    burnrate_otlp::Encoding::Proto
                },
            );
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}
