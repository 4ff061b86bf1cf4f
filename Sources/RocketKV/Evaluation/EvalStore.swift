import Foundation

/// One scored output: a prompt × method × budget (one line of `predictions.jsonl`).
public struct EvalPrediction: Codable, Sendable {
    public var task: String
    public var method: String
    /// nil for methods without a budget (`full`).
    public var budget: Int?
    /// Requested prompt length in tokens.
    public var length: Int
    /// Needle depth (passkey) or nil.
    public var depth: Double?
    public var sample: Int
    public var output: String
    public var expected: String
    /// Exact match (passkey) or top-1 agreement with `full` (fidelity), in [0, 1].
    public var score: Double
    /// Passkey: longest common substring / key length.
    public var partial: Double?
    /// Fidelity: mean KL(full ‖ method) of the next-token distributions, and mean negative log-likelihood.
    public var kl: Double?
    public var nll: Double?
    public var promptTokens: Int
    public var kvStoredBytes: Int
    public var kvReadBytesPerStep: Int

    /// Identifies the cell, for resuming.
    public var id: String { Self.id(task: task, method: method, budget: budget, length: length, depth: depth, sample: sample) }

    public static func id(task: String, method: String, budget: Int?, length: Int, depth: Double?, sample: Int) -> String {
        "\(task)|\(method)|\(budget ?? 0)|\(length)|\(depth ?? -1)|\(sample)"
    }

    enum CodingKeys: String, CodingKey {
        case task, method, budget, length, depth, sample, output, expected, score, partial, kl, nll
        case promptTokens = "prompt_tokens", kvStoredBytes = "kv_stored_bytes", kvReadBytesPerStep = "kv_read_bytes_per_step"
    }

    public init(task: String, method: String, budget: Int?, length: Int, depth: Double?, sample: Int, output: String,
                expected: String, score: Double, promptTokens: Int, statistics: KVStatistics) {
        self.task = task
        self.method = method
        self.budget = budget
        self.length = length
        self.depth = depth
        self.sample = sample
        self.output = output
        self.expected = expected
        self.score = score
        self.promptTokens = promptTokens
        kvStoredBytes = statistics.storedBytes
        kvReadBytesPerStep = statistics.bytesReadLastStep
    }

    /// Writes every key, nil ones as `null`, so each line has the same columns.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(task, forKey: .task)
        try c.encode(method, forKey: .method)
        try c.encode(budget, forKey: .budget)
        try c.encode(length, forKey: .length)
        try c.encode(depth, forKey: .depth)
        try c.encode(sample, forKey: .sample)
        try c.encode(output, forKey: .output)
        try c.encode(expected, forKey: .expected)
        try c.encode(score, forKey: .score)
        try c.encode(partial, forKey: .partial)
        try c.encode(kl, forKey: .kl)
        try c.encode(nll, forKey: .nll)
        try c.encode(promptTokens, forKey: .promptTokens)
        try c.encode(kvStoredBytes, forKey: .kvStoredBytes)
        try c.encode(kvReadBytesPerStep, forKey: .kvReadBytesPerStep)
    }
}

/// `DIR/predictions.jsonl`, appended to line by line so an interrupted sweep resumes where it stopped.
public final class EvalStore {
    public let folder: URL
    public private(set) var predictions: [EvalPrediction] = []
    private var done: Set<String> = []
    private let handle: FileHandle

    /// Opens (creating if needed) `folder` and reads the predictions already there.
    public init(folder: URL) throws {
        self.folder = folder
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let url = folder.appendingPathComponent("predictions.jsonl")
        if let data = FileManager.default.contents(atPath: url.path) {
            for (number, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() {
                guard let prediction = try? JSONDecoder().decode(EvalPrediction.self, from: Data(line)) else {
                    throw InferenceError("\(url.path) line \(number + 1) is not a prediction; remove it or use another --out")
                }
                predictions.append(prediction)
                done.insert(prediction.id)
            }
        } else {
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else { throw InferenceError("cannot create \(url.path)") }
        }
        handle = try FileHandle(forWritingTo: url)
        handle.seekToEndOfFile()
    }

    deinit { try? handle.close() }

    public func contains(_ id: String) -> Bool { done.contains(id) }

    public func append(_ prediction: EvalPrediction) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        handle.write(try encoder.encode(prediction) + Data("\n".utf8))
        predictions.append(prediction)
        done.insert(prediction.id)
    }

    /// Writes `value` as pretty JSON to `DIR/name`.
    public func writeJSON<T: Encodable>(_ value: T, name: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        try encoder.encode(value).write(to: folder.appendingPathComponent(name))
    }
}

/// The mean scores of one task × method × budget × length (one entry of `metrics.json`).
public struct EvalMetric: Codable, Sendable {
    public var task: String
    public var method: String
    public var budget: Int?
    public var length: Int
    public var count: Int
    /// Mean score × 100.
    public var accuracy: Double
    public var partial: Double?
    public var kl: Double?
    public var perplexity: Double?
    public var kvReadBytesPerStep: Double

    enum CodingKeys: String, CodingKey {
        case task, method, budget, length, count, accuracy, partial, kl, perplexity
        case kvReadBytesPerStep = "kv_read_bytes_per_step"
    }

    /// Groups predictions by task, method, budget and length, in the order they first appear.
    public static func summarize(_ predictions: [EvalPrediction]) -> [EvalMetric] {
        groupsInOrder(predictions) { "\($0.task)|\($0.method)|\($0.budget ?? 0)|\($0.length)" }.map { group in
            let first = group[0], n = Double(group.count)
            func mean(_ values: [Double]) -> Double? { values.isEmpty ? nil : values.reduce(0, +) / Double(values.count) }
            return EvalMetric(task: first.task, method: first.method, budget: first.budget, length: first.length, count: group.count,
                              accuracy: 100 * group.map(\.score).reduce(0, +) / n,
                              partial: mean(group.compactMap(\.partial)).map { 100 * $0 },
                              kl: mean(group.compactMap(\.kl)),
                              perplexity: mean(group.compactMap(\.nll)).map { exp($0) },
                              kvReadBytesPerStep: Double(group.map(\.kvReadBytesPerStep).reduce(0, +)) / n)
        }
    }

    /// One entry per method × budget × length with the mean accuracy over `metrics`' tasks (RULER's average).
    public static func averageOverTasks(_ metrics: [EvalMetric], as task: String) -> [EvalMetric] {
        groupsInOrder(metrics) { "\($0.method)|\($0.budget ?? 0)|\($0.length)" }.map { group in
            let n = Double(group.count)
            var m = group[0]
            m.task = task
            m.count = group.map(\.count).reduce(0, +)
            m.accuracy = group.map(\.accuracy).reduce(0, +) / n
            m.partial = nil
            m.kvReadBytesPerStep = group.map(\.kvReadBytesPerStep).reduce(0, +) / n
            return m
        }
    }
}

/// `items` grouped by `key`, groups and their members in first-seen order.
func groupsInOrder<T>(_ items: [T], key: (T) -> String) -> [[T]] {
    var order: [String] = []
    var groups: [String: [T]] = [:]
    for item in items {
        let k = key(item)
        if groups[k] == nil { order.append(k) }
        groups[k, default: []].append(item)
    }
    return order.map { groups[$0]! }
}
