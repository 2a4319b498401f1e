// Assistant audio player. Plays 16-bit PCM chunks in order and reports, per item, the
// milliseconds played so far (cumulative from the item's start): every 10 ms of audio (half
// the 20 ms frame, so an acknowledgement is never a frame behind), at the end of each chunk, and when flushed (the user barged in: drop everything now).
class Player extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = []; // {item, samples: Float32Array, offset}
    this.played = new Map(); // item id -> samples played
    this.reported = new Map(); // item id -> samples at the last report
    this.every = Math.round(sampleRate / 100);
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg.type === "audio") {
      const pcm = new Int16Array(msg.pcm);
      const samples = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
      this.queue.push({ item: msg.item, samples, offset: 0 });
    } else if (msg.type === "flush") {
      const head = this.queue[0];
      const dropped = this.queue.reduce((n, c) => n + c.samples.length - c.offset, 0);
      this.queue = [];
      const item = head ? head.item : msg.item;
      const ms = item ? this.ms(item) : 0;
      if (item) this.report(item, true);
      this.port.postMessage({ type: "flushed", item, ms, dropped_ms: (dropped * 1000) / sampleRate });
    }
  }

  ms(item) {
    return ((this.played.get(item) || 0) * 1000) / sampleRate;
  }

  report(item, force) {
    const at = this.played.get(item) || 0;
    if (!force && at - (this.reported.get(item) || 0) < this.every) return;
    if (at === this.reported.get(item)) return;
    this.reported.set(item, at);
    this.port.postMessage({ type: "played", item, ms: (at * 1000) / sampleRate });
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    let i = 0;
    while (i < out.length && this.queue.length) {
      const chunk = this.queue[0];
      const n = Math.min(out.length - i, chunk.samples.length - chunk.offset);
      out.set(chunk.samples.subarray(chunk.offset, chunk.offset + n), i);
      chunk.offset += n;
      i += n;
      this.played.set(chunk.item, (this.played.get(chunk.item) || 0) + n);
      if (chunk.offset >= chunk.samples.length) {
        this.queue.shift();
        this.report(chunk.item, true);
      } else {
        this.report(chunk.item, false);
      }
    }
    out.fill(0, i);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    return true;
  }
}

registerProcessor("player", Player);
