// The browser half of asrkit.widgets.microphone.Microphone: microphone -> AudioWorklet -> 16-bit PCM
// chunks sent to the kernel as binary buffers. No model code here: the kernel does the recognising.

// Runs on the audio thread: mixes the input to mono, converts it to int16 and hands over one chunk
// every `chunkSamples` frames, with the chunk's peak for the level meter.
const WORKLET = `
class AsrkitPcmChunker extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = options.processorOptions.chunkSamples;
    this.buffer = new Int16Array(this.size);
    this.filled = 0;
    this.peak = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.flush();
        this.port.postMessage({ flushed: true });
      }
    };
  }
  flush() {
    if (this.filled === 0) return;
    const pcm = this.buffer.slice(0, this.filled);
    this.port.postMessage({ pcm: pcm.buffer, peak: this.peak }, [pcm.buffer]);
    this.filled = 0;
    this.peak = 0;
  }
  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      const n = channels[0].length;
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (const channel of channels) s += channel[i];
        s = Math.max(-1, Math.min(1, s / channels.length));
        this.peak = Math.max(this.peak, Math.abs(s));
        this.buffer[this.filled++] = s < 0 ? s * 32768 : s * 32767;
        if (this.filled === this.size) this.flush();
      }
    }
    return true;
  }
}
registerProcessor("asrkit-pcm-chunker", AsrkitPcmChunker);
`;

// The rate the kernel's models use; browsers that cannot capture at it send their own rate and the
// kernel resamples.
const TARGET_RATE = 16000;
// The level meter spans this many dB below full scale.
const METER_DB = 60;
// A flush that the worklet does not answer within this many ms is given up on.
const FLUSH_TIMEOUT_MS = 500;
// The recording clock's update period, ms.
const CLOCK_MS = 250;

function insecureNote() {
  if (window.isSecureContext && navigator.mediaDevices && navigator.mediaDevices.getUserMedia) return "";
  return (
    "The browser allows the microphone only on a secure page: open the app at http://localhost or " +
    "http://127.0.0.1 on this computer, or serve it over https (see the README). Uploading a file still works."
  );
}

function openContext() {
  // Chrome resamples the microphone to the context's rate; Firefox refuses to connect a device to a
  // context at another rate, so it falls back to the device's rate.
  try {
    return new AudioContext({ sampleRate: TARGET_RATE });
  } catch (err) {
    return new AudioContext();
  }
}

async function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "asrkit-mic";
  const button = document.createElement("button");
  button.className = "asrkit-mic-button";
  const devices = document.createElement("select");
  devices.className = "asrkit-mic-devices";
  devices.title = "microphone";
  const meter = document.createElement("div");
  meter.className = "asrkit-mic-meter";
  const bar = document.createElement("div");
  bar.className = "asrkit-mic-level";
  meter.appendChild(bar);
  meter.title = "input level";
  const clock = document.createElement("span");
  clock.className = "asrkit-mic-clock";
  clock.title = "time recorded";
  const note = document.createElement("div");
  note.className = "asrkit-mic-note";
  root.append(button, clock, meter, devices, note);
  el.appendChild(root);

  let capture = null; // { stream, context, node } while recording
  let seq = 0;
  let localNote = insecureNote();
  let ticker = null; // the clock's interval while recording

  function elapsed(startedMs) {
    const seconds = Math.floor((Date.now() - startedMs) / 1000);
    return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
  }

  function show() {
    const recording = capture !== null;
    const icon = document.createElement("span");
    icon.className = "asrkit-mic-icon";
    icon.textContent = recording ? "■" : "●";
    button.replaceChildren(icon, ` ${recording ? "stop" : model.get("start_label")}`);
    button.classList.toggle("asrkit-recording", recording);
    clock.classList.toggle("asrkit-recording", recording);
    button.disabled = !recording && (!model.get("enabled") || localNote.startsWith("The browser allows"));
    devices.disabled = recording;
    note.textContent = [localNote, model.get("message")].filter((t) => t).join(" ");
  }

  async function listDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    const chosen = devices.value;
    const inputs = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
    devices.replaceChildren(
      ...inputs.map((d, i) => {
        const option = document.createElement("option");
        option.value = d.deviceId;
        // labels are empty until the user has allowed the microphone once
        option.textContent = d.label || `microphone ${i + 1}`;
        return option;
      }),
    );
    if (inputs.some((d) => d.deviceId === chosen)) devices.value = chosen;
    // an empty list reads as a broken control; the note says why nothing records
    devices.hidden = inputs.length === 0;
  }

  function level(peak) {
    const db = 20 * Math.log10(Math.max(peak, 1e-6));
    bar.style.width = `${Math.max(0, Math.min(100, (100 * (db + METER_DB)) / METER_DB))}%`;
  }

  async function start() {
    localNote = "";
    const audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: true, channelCount: 1 };
    if (devices.value) audio.deviceId = { exact: devices.value };
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio });
    } catch (err) {
      localNote = `The microphone could not be opened (${err.name}: ${err.message}).`;
      show();
      return;
    }
    const context = openContext();
    const source = context.createMediaStreamSource(stream);
    const url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
    try {
      await context.audioWorklet.addModule(url);
    } finally {
      URL.revokeObjectURL(url);
    }
    const chunkSamples = Math.round((context.sampleRate * model.get("chunk_ms")) / 1000);
    const node = new AudioWorkletNode(context, "asrkit-pcm-chunker", { processorOptions: { chunkSamples } });
    node.port.onmessage = (event) => {
      if (!event.data.pcm) return;
      level(event.data.peak);
      model.send(
        { type: "chunk", rate: context.sampleRate, seq: seq++, sent_ms: Date.now() },
        undefined,
        [event.data.pcm],
      );
    };
    // the node writes silence; connecting it to the output keeps the graph pulling audio through it
    source.connect(node).connect(context.destination);
    await context.resume();
    capture = { stream, context, node };
    seq = 0;
    const startedMs = Date.now();
    clock.textContent = "0:00";
    ticker = setInterval(() => (clock.textContent = elapsed(startedMs)), CLOCK_MS);
    model.send({ type: "started", rate: context.sampleRate });
    model.set("recording", true);
    model.save_changes();
    show();
    listDevices();
  }

  async function stop() {
    if (capture === null) return;
    const { stream, context, node } = capture;
    capture = null;
    clearInterval(ticker);
    stream.getTracks().forEach((track) => track.stop());
    // send the part-filled last chunk before saying "stopped"
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, FLUSH_TIMEOUT_MS);
      node.port.addEventListener("message", (event) => {
        if (event.data.flushed) {
          clearTimeout(timer);
          resolve();
        }
      });
      node.port.postMessage("flush");
    });
    await context.close();
    level(0);
    model.send({ type: "stopped" });
    model.set("recording", false);
    model.save_changes();
    show();
  }

  button.addEventListener("click", () => (capture === null ? start() : stop()));
  model.on("change:enabled", show);
  model.on("change:message", show);
  model.on("change:start_label", show);
  model.on("msg:custom", (msg) => {
    if (msg.command === "stop") stop();
  });
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener("devicechange", listDevices);
  }
  show();
  listDevices();
  return () => stop();
}

export default { render };
