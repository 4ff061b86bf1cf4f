/// The pass-key retrieval prompt of the paper (spec §11.4, §16.6) and its scores.
public enum Passkey {
    public static let instruction = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information there.\n"
    public static let question = "\nWhat is the pass key? The pass key is "

    public static func needle(key: String) -> String { "The pass key is \(key). Remember it. \(key) is the pass key." }

    /// A prompt of `words` haystack words with the needle at word offset ⌊words · depth⌋.
    public static func prompt(haystack: Haystack, words: Int, depth: Double, key: String) -> String {
        let hay = haystack.prefix(words: words)
        let at = min(hay.count, Int((Double(words) * depth).rounded(.down)))
        let content = hay[..<at].joined(separator: " ") + " " + needle(key: key) + " " + hay[at...].joined(separator: " ") + " "
        return instruction + content + question
    }

    /// The longest prompt (most haystack words) whose encoding, with BOS, has at most `tokens` tokens.
    public static func prompt(haystack: Haystack, tokens: Int, depth: Double, key: String,
                              tokenizer: Tokenizer) -> (text: String, tokens: [Int]) {
        func encoded(_ words: Int) -> (String, [Int]) {
            let text = prompt(haystack: haystack, words: words, depth: depth, key: key)
            return (text, tokenizer.encode(text, addSpecial: true, parseSpecial: false))
        }
        // Token count grows with the word count; binary search the largest fitting word count.
        var low = 0, high = tokens
        while low < high {
            let mid = (low + high + 1) / 2
            if encoded(mid).1.count <= tokens { low = mid } else { high = mid - 1 }
        }
        return encoded(low)
    }

    /// A random 7-digit key (each digit independent, a leading zero allowed).
    public static func randomKey<G: RandomNumberGenerator>(using generator: inout G) -> String {
        String((0..<7).map { _ in Character(String(Int.random(in: 0...9, using: &generator))) })
    }

    /// 1 when the key appears in the response as a whole number (a maximal run of digits equal to the key,
    /// so `66689352` does not match `6689352`), else 0.
    public static func exactMatch(response: String, key: String) -> Double {
        let digits = response.split(whereSeparator: { !$0.isASCII || !$0.isNumber })
        return digits.contains { $0 == Substring(key) } ? 1 : 0
    }

    /// 1 when the key occurs anywhere in the normalised response, also inside a longer run of digits (the
    /// lenient score this harness used as "exact" before; kept as its own metric), else 0.
    public static func substringMatch(response: String, key: String) -> Double {
        normalize(response).contains(normalize(key)) ? 1 : 0
    }

    /// Longest common substring of the normalised response and key, over the key's length.
    public static func partialMatch(response: String, key: String) -> Double {
        let a = Array(normalize(response)), b = Array(normalize(key))
        guard !b.isEmpty else { return 0 }
        var best = 0
        var previous = [Int](repeating: 0, count: b.count + 1)
        for x in a {
            var current = [Int](repeating: 0, count: b.count + 1)
            for (j, y) in b.enumerated() where x == y {
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
            }
            previous = current
        }
        return Double(best) / Double(b.count)
    }

    /// Lower-case, punctuation and articles removed, whitespace collapsed (the paper's normalisation).
    public static func normalize(_ text: String) -> String {
        let lowered = text.lowercased().map { $0.isPunctuation ? " " : $0 }
        return String(lowered).split(whereSeparator: { $0.isWhitespace })
            .filter { !["a", "an", "the"].contains($0) }.joined(separator: " ")
    }
}
