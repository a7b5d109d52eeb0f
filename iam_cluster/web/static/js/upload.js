// New meeting: create it, stream the file to the API with an upload progress bar, queue the job,
// then follow it live until the transcript is ready.
import { api, csrfToken } from "./common.js";
import { jobView } from "./progress.js";

const form = document.getElementById("upload");
const input = document.getElementById("file");
const drop = document.getElementById("drop");
const fileName = document.getElementById("file-name");
const error = document.getElementById("upload-error");
const submit = document.getElementById("upload-submit");
const job = jobView(document.getElementById("job"));

function chosen() {
  const file = input.files[0];
  fileName.textContent = file ? `${file.name} (${(file.size / 1048576).toFixed(1)} MB)` : "";
  const title = form.elements.title;
  if (file && !title.value) title.value = file.name.replace(/\.[^.]+$/, "");
}

input.addEventListener("change", chosen);
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
}
for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  if (e.dataTransfer && e.dataTransfer.files.length) {
    input.files = e.dataTransfer.files;
    chosen();
  }
});

function send(url, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRFToken", csrfToken);
    xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
    xhr.upload.addEventListener("progress", (e) => e.lengthComputable && onProgress(e.loaded / e.total));
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON */
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new Error((body && body.error && body.error.message) || `upload failed (${xhr.status})`));
    });
    xhr.addEventListener("error", () => reject(new Error("the connection failed during the upload")));
    xhr.send(file);
  });
}

function fail(message) {
  error.textContent = message;
  error.hidden = false;
  submit.disabled = false;
  error.focus();
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  error.hidden = true;
  const file = input.files[0];
  const title = form.elements.title.value.trim();
  if (!title) return fail("Give the meeting a title.");
  if (!file) return fail("Choose a recording to upload.");
  submit.disabled = true;
  const options = { diarize: form.elements.diarize.checked };
  const speakers = Number(form.elements.num_speakers.value);
  if (options.diarize && speakers > 0) options.num_speakers = speakers;
  try {
    const meeting = await api("POST", "/api/v1/meetings", { title });
    job.uploading(0, "Uploading…");
    await send(`/api/v1/meetings/${meeting.id}/upload?filename=${encodeURIComponent(file.name)}`, file, (f) =>
      job.uploading(f, `Uploading ${Math.round(f * 100)}%`),
    );
    const queued = await api("POST", `/api/v1/meetings/${meeting.id}/transcribe`, options);
    form.hidden = true;
    job.watch(meeting.id, queued, () => document.getElementById("job-open").focus());
  } catch (err) {
    fail(err.message);
  }
});
