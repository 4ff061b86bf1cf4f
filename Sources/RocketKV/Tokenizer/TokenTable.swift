#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Token ids by exact UTF-8 bytes of their text, like llama.cpp's `token_to_id` map.
///
/// Swift `String` equality is canonical equivalence ("é" == "e\u{301}"), which would merge distinct
/// tokens of a multilingual vocabulary; this table compares bytes. It is an open-addressing hash
/// table over the token texts stored back to back, so a lookup needs no `String` at all: the
/// SentencePiece merge loop probes every candidate pair of symbols straight from its text buffer.
struct TokenTable {
    /// The texts of all tokens, concatenated; token `i` is `bytes[start[i]..<start[i + 1]]`.
    private let bytes: [UInt8]
    private let start: [Int]
    /// Token id per slot, -1 for an empty slot; the count is a power of two.
    private let slots: [Int32]
    /// Length in bytes of the longest token text.
    let maxLength: Int

    /// Builds the table; if two tokens have the same bytes, `duplicate` gets (first id, second id)
    /// and the first is kept.
    init(_ texts: [String], duplicate: (Int, Int) throws -> Void) rethrows {
        var bytes: [UInt8] = []
        var start: [Int] = [0]
        start.reserveCapacity(texts.count + 1)
        for text in texts {
            bytes.append(contentsOf: text.utf8)
            start.append(bytes.count)
        }
        var capacity = 16
        while capacity < 2 * texts.count { capacity <<= 1 }
        var slots = [Int32](repeating: -1, count: capacity)
        var maxLength = 0
        try bytes.withUnsafeBufferPointer { all in
            for id in texts.indices {
                let lo = start[id], hi = start[id + 1]
                maxLength = max(maxLength, hi - lo)
                let text = UnsafeBufferPointer(rebasing: all[lo..<hi])
                var slot = Self.hash(text) & (capacity - 1)
                while slots[slot] >= 0 {
                    let other = Int(slots[slot])
                    if Self.equal(text, UnsafeBufferPointer(rebasing: all[start[other]..<start[other + 1]])) {
                        try duplicate(other, id)
                        break
                    }
                    slot = (slot + 1) & (capacity - 1)
                }
                if slots[slot] < 0 { slots[slot] = Int32(id) }
            }
        }
        self.bytes = bytes
        self.start = start
        self.slots = slots
        self.maxLength = maxLength
    }

    /// The id of the token whose text is exactly `text`.
    func id(of text: UnsafeBufferPointer<UInt8>) -> Int32? {
        guard text.count <= maxLength else { return nil }
        let mask = slots.count - 1
        return bytes.withUnsafeBufferPointer { all -> Int32? in
            var slot = Self.hash(text) & mask
            while true {
                let id = slots[slot]
                if id < 0 { return nil }
                if Self.equal(text, UnsafeBufferPointer(rebasing: all[start[Int(id)]..<start[Int(id) + 1]])) {
                    return id
                }
                slot = (slot + 1) & mask
            }
        }
    }

    func id(of text: String) -> Int32? {
        var text = text
        return text.withUTF8 { id(of: $0) }
    }

    /// FNV-1a.
    @inline(__always)
    private static func hash(_ text: UnsafeBufferPointer<UInt8>) -> Int {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in text { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    @inline(__always)
    private static func equal(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        a.count == b.count && (a.isEmpty || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    }
}
