// What every capability answers when it will not or cannot do a thing: the guest's `cap-error`
// (jco lowers a thrown object's `payload` as the import's error result).
export class CapError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
    this.payload = { tag: kind, val: message };
  }
  static denied(m) { return new CapError("denied", m); }
  static unavailable(m) { return new CapError("unavailable", m); }
  static invalid(m) { return new CapError("invalid", m); }
  static unknown(m) { return new CapError("unknown", m); }
}
