// Microphone capture: the context's samples resampled (linearly) to the session's input rate,
// sent to the page as 16-bit PCM frames of 20 ms.
class MicCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.target = options.processorOptions.targetRate;
    this.step = sampleRate / this.target; // input samples per output sample
    this.frame = new Int16Array(Math.round(this.target / 50));
    this.filled = 0;
    this.pos = 0; // fractional read position into the pending input
    this.pending = new Float32Array(0);
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    const joined = new Float32Array(this.pending.length + channel.length);
    joined.set(this.pending);
    joined.set(channel, this.pending.length);
    let pos = this.pos;
    while (pos + 1 < joined.length) {
      const i = Math.floor(pos);
      const frac = pos - i;
      const v = joined[i] * (1 - frac) + joined[i + 1] * frac;
      this.frame[this.filled++] = Math.max(-32768, Math.min(32767, Math.round(v * 32767)));
      if (this.filled === this.frame.length) {
        this.port.postMessage(this.frame.buffer.slice(0));
        this.filled = 0;
      }
      pos += this.step;
    }
    const keep = Math.floor(pos);
    this.pending = joined.slice(keep);
    this.pos = pos - keep;
    return true;
  }
}

registerProcessor("mic-capture", MicCapture);
