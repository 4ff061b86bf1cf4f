/// Turns generated tokens into text as they arrive.
///
/// A token can end in the middle of a multi-byte UTF-8 character (byte-level BPE splits emoji and CJK
/// characters over several tokens), so the bytes of an incomplete trailing character are held back
/// until the tokens that complete it arrive. Bytes that can never become valid UTF-8 are replaced by
/// U+FFFD (one per maximal ill-formed subpart, like Swift's `String(decoding:as:)`), so the
/// concatenation of everything returned equals `tokenizer.decode(allIDs, special: special)` when the
/// stream starts the text (`startOfText`) or the vocabulary adds no space prefix.
public struct StreamingDecoder {
    public let tokenizer: Tokenizer
    /// Whether control tokens appear as their text (see `Tokenizer.bytes(of:special:)`).
    public let special: Bool
    private var pending: [UInt8] = []
    /// Whether the next token's leading space is dropped (the first token of a text, as `decode`).
    private var stripsNextLeadingSpace: Bool

    /// - Parameter startOfText: the tokens begin a text, so the first one loses its leading space as
    ///   in `Tokenizer.decode` when the vocabulary adds a space prefix (SentencePiece). Leave it false
    ///   for tokens that continue a prompt, such as generated ones: llama.cpp prints their pieces whole.
    public init(tokenizer: Tokenizer, special: Bool = true, startOfText: Bool = false) {
        self.tokenizer = tokenizer
        self.special = special
        self.stripsNextLeadingSpace = startOfText && tokenizer.addsSpacePrefix
    }

    /// Adds a token; returns the text it completes (possibly empty).
    public mutating func append(_ id: Int) -> String {
        tokenizer.appendBytes(of: id, special: special, stripLeadingSpace: stripsNextLeadingSpace, to: &pending)
        stripsNextLeadingSpace = false
        let ready = StreamingDecoder.completePrefixLength(pending)
        guard ready > 0 else { return "" }
        let text = String(decoding: pending[..<ready], as: UTF8.self)
        pending.removeFirst(ready)
        return text
    }

    /// Returns whatever is still held back (an unfinished character becomes U+FFFD) and resets.
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Bytes held back, waiting for the rest of a character.
    public var pendingByteCount: Int { pending.count }

    /// Length of the longest prefix of `bytes` that ends on a character boundary, leaving out a trailing
    /// sequence that is incomplete but could still become valid.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        var i = 0
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            let need: Int
            var low: UInt8 = 0x80, high: UInt8 = 0xBF  // allowed range of the second byte
            switch b {
            case 0x00...0x7F: i += 1; continue
            case 0xC2...0xDF: need = 1
            case 0xE0: need = 2; low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: need = 2
            case 0xED: need = 2; high = 0x9F
            case 0xF0: need = 3; low = 0x90
            case 0xF1...0xF3: need = 3
            case 0xF4: need = 3; high = 0x8F
            default: i += 1; continue  // never valid: one replacement character
            }
            var j = 1
            while j <= need {
                if i + j >= n { return i }  // incomplete so far: hold back from here
                let c = bytes[i + j]
                let ok = j == 1 ? (low...high).contains(c) : (0x80...0xBF).contains(c)
                if !ok { break }
                j += 1
            }
            i += j  // a whole character, or an ill-formed subpart of j bytes
        }
        return n
    }
}
