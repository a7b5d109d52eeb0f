// A transcription job's progress bar: upload, then queued, processing and done, from live events
// (job_progress / job_completed / job_failed), caught up from the REST API when the socket (re)opens.
import { api, on } from "./common.js";

const STAGES = { queued: "Queued", processing: "Transcribing", completed: "Done", failed: "Failed", cancelled: "Cancelled" };

export function jobView(section) {
  const stage = section.querySelector("#job-stage");
  const bar = section.querySelector("#job-progress");
  const status = section.querySelector("#job-status");
  const done = section.querySelector("#job-done");
  let meetingId = section.dataset.meeting || "";
  let finished = false;
  let onDone = () => {};

  function show(state, fraction, text) {
    section.hidden = false;
    section.dataset.state = state;
    stage.textContent = STAGES[state] || (state === "uploading" ? "Uploading" : state);
    const pct = Math.max(0, Math.min(100, Math.round(fraction * 100)));
    bar.value = pct;
    bar.textContent = `${pct}%`;
    status.textContent = text === undefined ? `${pct}%` : text;
  }

  function apply(job) {
    if (!job || finished) return;
    if (job.status === "completed") {
      finished = true;
      show("completed", 1, "The transcript is ready.");
      done.hidden = false;
      onDone();
    } else if (job.status === "failed" || job.status === "cancelled") {
      finished = true;
      show(job.status, job.progress || 0, job.error_message || "The job did not finish.");
    } else {
      show(job.status, job.progress || 0);
    }
  }

  async function catchUp() {
    if (!meetingId || finished) return;
    try {
      apply((await api("GET", `/api/v1/meetings/${meetingId}`)).job);
    } catch {
      /* the next event or catch-up will tell */
    }
  }

  const mine = (data) => data.meeting_id === meetingId;
  on("job_progress", (d) => mine(d) && apply({ status: "processing", progress: d.progress }));
  on("job_completed", (d) => mine(d) && apply({ status: "completed" }));
  on("job_failed", (d) => mine(d) && apply({ status: "failed", error_message: d.error_message }));
  on("job_cancelled", (d) => mine(d) && apply({ status: "cancelled" }));
  on("open", catchUp);
  setInterval(catchUp, 15000); // events are a convenience; the REST API is the record

  return {
    uploading(fraction, text) {
      show("uploading", fraction, text);
    },
    watch(id, job, whenDone) {
      meetingId = id;
      section.dataset.meeting = id;
      done.querySelector("a").href = `/meetings/${id}`;
      onDone = whenDone || onDone;
      apply(job);
      catchUp();
    },
  };
}
