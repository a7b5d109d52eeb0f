// The transcript page: click a word or a time to play from there, follow playback, rename speakers,
// and follow a running job until its transcript is ready.
import { api } from "./common.js";
import { jobView } from "./progress.js";

const audio = document.getElementById("audio");
const list = document.getElementById("transcript");

if (audio && list) {
  // A word, a segment, or a time in the transcript or the insights: play from there.
  document.addEventListener("click", (e) => {
    const target = e.target.closest("#transcript [data-t], #insights [data-t]");
    if (!target) return;
    audio.currentTime = Number(target.dataset.t);
    audio.play().catch(() => {}); // a browser may refuse to play; the position still moved
  });
  const segments = Array.from(list.children);
  const starts = segments.map((li) => Number(li.dataset.t));
  let current = null;
  audio.addEventListener("timeupdate", () => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= audio.currentTime) lo = mid;
      else hi = mid - 1;
    }
    const now = segments[lo];
    if (now !== current) {
      if (current) current.classList.remove("now");
      if (now) now.classList.add("now");
      current = now;
    }
  });
}

const speakers = document.getElementById("speakers");
if (speakers) {
  const status = document.getElementById("speakers-status");
  speakers.addEventListener("submit", async (e) => {
    e.preventDefault();
    const names = {};
    for (const input of speakers.querySelectorAll("input")) names[input.name] = input.value.trim();
    try {
      const saved = await api("PUT", `/api/v1/meetings/${speakers.dataset.meeting}/speakers`, { names });
      for (const el of document.querySelectorAll(".who[data-spk]")) el.textContent = saved.names[el.dataset.spk] || el.dataset.spk;
      status.textContent = "Names saved.";
    } catch (err) {
      status.textContent = err.message;
    }
  });
}

const section = document.getElementById("job");
if (section && section.dataset.meeting) {
  const job = jobView(section);
  job.watch(section.dataset.meeting, { status: section.dataset.status, progress: Number(section.dataset.progress) }, () =>
    location.reload(),
  );
}

const again = document.getElementById("transcribe");
if (again) {
  again.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("POST", `/api/v1/meetings/${again.dataset.meeting}/transcribe`, { diarize: again.elements.diarize.checked });
      location.reload(); // the page then follows the new job live
    } catch (err) {
      document.getElementById("transcribe-status").textContent = err.message;
    }
  });
}
