//! Where an input's frames go: the stream's buffer (this process is its one writer),
//! the stream's processes (external programs fed MPEG-TS, whose output comes back as
//! new tracks), and the controller's events (`stream.started`, `stream.ready` at the
//! first keyframe, `stream.ended`).

use super::process::{self, ProcessHandle};
use crate::config::StreamProcess;
use crate::env::Env;
use brume_format::{Frame, Track};
use brume_shm::{Layout, Writer};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The buffer and the track lists that make up its track list: the source's own and
/// each process's.
pub struct Shared {
    pub writer: Writer,
    source: Vec<Track>,
    added: BTreeMap<String, Vec<Track>>,
}

impl Shared {
    fn publish(&mut self) -> brume_shm::Result<()> {
        let mut all = self.source.clone();
        for t in self.added.values() {
            all.extend(t.iter().cloned());
        }
        self.writer.set_tracks(&all)
    }

    /// A process's tracks joined the stream (or changed).
    pub fn set_added(&mut self, process: &str, tracks: Vec<Track>) -> brume_shm::Result<()> {
        self.added.insert(process.to_string(), tracks);
        self.publish()
    }
}

pub struct Sink {
    shared: Arc<Mutex<Shared>>,
    stream: String,
    epoch: u32,
    controller: PathBuf,
    ready: bool,
    has_video: bool,
    processes: Vec<ProcessHandle>,
}

/// Sends an event to the controller's triggers (best effort).
pub fn event(
    controller: &std::path::Path,
    name: &str,
    stream: &str,
    mut fields: serde_json::Value,
) {
    fields["event"] = json!(name);
    fields["stream"] = json!(stream);
    let _ = crate::handoff::send_event(controller, &fields);
}

impl Sink {
    /// Claims the stream's buffer and starts its processes.
    pub fn open(
        env: &Env,
        stream: &str,
        source: &str,
        processes: &[StreamProcess],
    ) -> brume_shm::Result<Sink> {
        let writer = Writer::open(&env.ns, stream, Layout::default())?;
        let epoch = writer.epoch();
        let controller = env.controller_socket();
        event(
            &controller,
            "stream.started",
            stream,
            json!({ "source": source, "epoch": epoch, "pid": std::process::id() }),
        );
        let shared = Arc::new(Mutex::new(Shared {
            writer,
            source: Vec::new(),
            added: BTreeMap::new(),
        }));
        let processes = processes
            .iter()
            .enumerate()
            .map(|(i, p)| process::start(env, stream, i, p.clone(), shared.clone()))
            .collect();
        Ok(Sink {
            shared,
            stream: stream.to_string(),
            epoch,
            controller,
            ready: false,
            has_video: false,
            processes,
        })
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The source's tracks (the processes' tracks are kept).
    pub fn set_tracks(&mut self, tracks: &[Track]) -> brume_shm::Result<()> {
        self.has_video = tracks.iter().any(|t| t.codec.is_video());
        {
            let mut s = self.shared.lock().expect("sink lock");
            s.source = tracks.to_vec();
            s.publish()?;
        }
        for p in &mut self.processes {
            p.tracks(tracks);
        }
        Ok(())
    }

    pub fn write(&mut self, frame: &Frame) -> brume_shm::Result<()> {
        self.shared.lock().expect("sink lock").writer.write(frame)?;
        if !self.ready && frame.key {
            let is_video = self
                .shared
                .lock()
                .expect("sink lock")
                .source
                .iter()
                .any(|t| t.id == frame.track && t.codec.is_video());
            if is_video || !self.has_video {
                self.ready = true;
                event(
                    &self.controller,
                    "stream.ready",
                    &self.stream,
                    json!({ "epoch": self.epoch }),
                );
            }
        }
        for p in &mut self.processes {
            p.frame(frame);
        }
        Ok(())
    }

    pub fn add_dropped(&self, n: u64) {
        self.shared.lock().expect("sink lock").writer.add_dropped(n);
    }

    /// Stops the processes but leaves the buffer for the next input to adopt (a
    /// device that vanished, a publisher that left).
    pub fn abandon(self, reason: &str) {
        for p in self.processes {
            p.stop();
        }
        if let Some(s) = Arc::try_unwrap(self.shared)
            .ok()
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        {
            s.writer.release();
        }
        event(
            &self.controller,
            "stream.ended",
            &self.stream,
            json!({ "epoch": self.epoch, "reason": reason }),
        );
    }

    /// Stops the processes and ends the stream.
    pub fn finish(self) {
        for p in self.processes {
            p.stop();
        }
        let shared = Arc::try_unwrap(self.shared)
            .ok()
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()));
        match shared {
            Some(s) => s.writer.finish(),
            // A process thread still holds the buffer: the input's exit ends it (its
            // angel removes a dead writer's buffer).
            None => {
                tracing::warn!(stream = %self.stream, "a stream process did not let go of the buffer")
            }
        }
        event(
            &self.controller,
            "stream.ended",
            &self.stream,
            json!({ "epoch": self.epoch }),
        );
    }
}
