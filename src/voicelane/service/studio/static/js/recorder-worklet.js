// AudioWorklet: forwards the microphone's first channel to the page in blocks.
class Tap extends AudioWorkletProcessor {
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch) this.port.postMessage(ch.slice(0));
    return true;
  }
}
registerProcessor("voicelane-tap", Tap);
