//! A lane's shared state as its connection threads use it: the queue, the per-connection
//! inboxes of delegated sends, connection states, outcomes, and what an idle connection does
//! next ([`Lane::next`]).

use super::*;

impl Lane {
    pub(super) fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn stopping(&self) -> bool {
        self.lock().stopping
    }

    pub(super) fn down_message(&self, st: &LaneState) -> String {
        format!(
            "all {} connections to {} are down: {}",
            st.conns.len(),
            self.addr,
            st.last_error
        )
    }

    pub(super) fn emit(
        &self,
        id: u64,
        conn: usize,
        result: Result<Reply, Failure>,
        sent_at: Option<Instant>,
    ) {
        let done_at = Instant::now();
        let _ = self.outcomes.send(Outcome {
            id,
            lane: self.index,
            conn,
            result,
            sent_at: sent_at.unwrap_or(done_at),
            done_at,
        });
    }

    /// Sets connection `conn`'s state; going down records `error` and, when it was the last
    /// connection up, fails every queued request.
    pub(super) fn set_state(&self, conn: usize, state: ConnState, error: Option<&str>) {
        let mut st = self.lock();
        st.conns[conn] = state;
        if let Some(e) = error {
            st.last_error = e.to_string();
        }
        if state == ConnState::Up {
            return;
        }
        st.sockets[conn] = None;
        if state == ConnState::Down && all_down(&st.conns) && !st.queue.is_empty() {
            let reason = self.down_message(&st);
            let queued: Vec<Job> = st.queue.drain(..).collect();
            drop(st);
            for job in queued {
                self.emit(
                    job.id,
                    NO_CONN,
                    Err(Failure::not_sent(reason.clone())),
                    None,
                );
            }
        }
    }

    /// Connection `conn` is up on `stream`.
    pub(super) fn set_up(&self, conn: usize, stream: &TcpStream) {
        let mut st = self.lock();
        st.conns[conn] = ConnState::Up;
        st.sockets[conn] = stream.try_clone().ok();
        if st.stopping {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Gives back a request that was taken but not written (or fails it when stopping, since
    /// `stop` has already emptied the queue).
    pub(super) fn requeue(&self, job: Job) {
        let mut st = self.lock();
        if st.stopping {
            drop(st);
            self.emit(
                job.id,
                NO_CONN,
                Err(Failure::new(
                    relay_failure::NOT_SENT,
                    "the relay pool stopped before sending it",
                )),
                None,
            );
            return;
        }
        st.queue.push_front(job);
        drop(st);
        self.work.notify_one();
    }

    /// Waits `delay` unless stopped first; false when stopping.
    pub(super) fn sleep(&self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        let mut st = self.lock();
        loop {
            if st.stopping {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            st = self
                .wake
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Arms session `session` for the data plane if everything written on `stream` has been
    /// acknowledged, with the TLS write state (keys, next sequence number) it continues from.
    pub(super) fn arm_if_settled(&self, session: usize, stream: &TcpStream, tls: Option<&TlsConn>) {
        if unacked(stream) != 0 {
            return; // `Lane::next` arms it once the relay has acknowledged the rest
        }
        let tx = tls.map(TlsConn::tx_state);
        let armed = tx.as_ref().map(TxState::publish);
        self.board.arm(session, armed);
    }

    /// What an idle connection does next: the completion of a data-plane send on it, a queued
    /// request, a keep-alive ping once it has been idle since `idle_since` for the ping
    /// interval, or stop. While it waits it is armed: the data plane may claim it, after which
    /// it writes nothing of its own until the claim's completion arrives.
    pub(super) fn next(
        &self,
        conn: usize,
        idle_since: Instant,
        stream: &TcpStream,
        tls: Option<&TlsConn>,
    ) -> Next {
        let session = self.first_session + conn;
        // The write keys and sequence number the data plane continues from if it claims the
        // connection: nothing is written on it between here and the claim's completion.
        let tx = tls.map(TlsConn::tx_state);
        let armed = tx.as_ref().map(TxState::publish);
        let mut st = self.lock();
        let mut claimed_since: Option<Instant> = None;
        loop {
            if st.stopping {
                return Next::Stop;
            }
            if let Some(job) = st.inbox[conn].pop_front() {
                return Next::Delegated(job);
            }
            if self.board.claimed(session) {
                // The data plane sent on this connection; its hand-off is on its way.
                let since = *claimed_since.get_or_insert_with(Instant::now);
                if since.elapsed() > CLAIM_TIMEOUT {
                    return Next::Abandon;
                }
                st = self
                    .work
                    .wait_timeout(st, Duration::from_millis(5))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            if !st.queue.is_empty() {
                if self.board.take(session) {
                    if let Some(job) = st.queue.pop_front() {
                        return Next::Job(job);
                    }
                }
                continue; // claimed meanwhile: wait for the completion instead
            }
            // Armed only once the relay has acknowledged every byte written: then the data
            // plane, which bridges them, has seen them go out and continues after them. (A
            // TLS KeyUpdate gets no answer, so it may still be on its way to the bridge when
            // the loop comes here; a fast send then would take its place in the byte stream.)
            let settled = unacked(stream) == 0;
            if settled {
                self.board.arm(session, armed);
            }
            let due = (!self.ping_interval.is_zero()).then(|| idle_since + self.ping_interval);
            if let Some(due) = due {
                if Instant::now() >= due {
                    if self.board.take(session) {
                        return Next::Ping;
                    }
                    continue;
                }
            }
            // Short waits while armed: a claim does not notify this condvar; shorter until the
            // last write is acknowledged.
            let poll = Duration::from_millis(if settled { 5 } else { 1 });
            let wait = due
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(poll)
                .min(poll);
            st = self
                .work
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
