import Foundation

/// One scored output: a prompt × method × budget (one line of `predictions.jsonl`).
public struct EvalPrediction: Codable, Sendable, Equatable {
    public var task: String
    public var method: String
    /// nil for methods without a budget (`full`).
    public var budget: Int?
    /// Requested prompt length in tokens.
    public var length: Int
    /// Needle depth (passkey) or nil.
    public var depth: Double?
    public var sample: Int
    /// Position of the prompt in its sweep's list of prompts (what `--shard` splits on and `eval merge` orders by).
    public var prompt: Int?
    /// Which of the folder's sweeps of this task (its index in `config.json`) made the prediction.
    public var sweep: Int?
    /// The settings the output depends on besides the cell (`EvalSettings.configuration(for:)`); nil in
    /// predictions written before this field existed.
    public var configuration: String?
    /// The method's resolved plan for this prompt (`KVPolicy.planDescription`), if it has one.
    public var plan: String?
    public var output: String
    public var expected: String
    /// Passkey: the key as a whole number in the output; RULER and multi-turn: the fraction of expected strings
    /// found; fidelity: top-1 agreement with `full`. In [0, 1].
    public var score: Double
    /// Passkey: the key anywhere in the normalised output, also inside a longer run of digits.
    public var substring: Double?
    /// Passkey: longest common substring / key length.
    public var partial: Double?
    /// Fidelity: mean KL(full ‖ method) of the next-token distributions, and mean negative log-likelihood.
    public var kl: Double?
    public var nll: Double?
    public var promptTokens: Int
    public var kvStoredBytes: Int
    /// Bytes of the cache the method's code read in its last decode step.
    public var kvReadBytesPerStep: Int
    /// The method's ideal read where it differs from what the code reads (`topk`: 2d·t per group).
    public var kvIdealReadBytesPerStep: Int?

    /// Identifies the cell and everything its output depends on, for resuming: a prediction made with other
    /// settings, options, plan or engine version is a different cell.
    public var id: String {
        Self.id(task: task, method: method, budget: budget, length: length, depth: depth, sample: sample) + "|\(configuration ?? "")|\(plan ?? "")"
    }

    public static func id(task: String, method: String, budget: Int?, length: Int, depth: Double?, sample: Int) -> String {
        "\(task)|\(method)|\(budget ?? 0)|\(length)|\(depth ?? -1)|\(sample)"
    }

    enum CodingKeys: String, CodingKey {
        case task, method, budget, length, depth, sample, prompt, sweep, configuration, plan, output, expected, score, substring, partial, kl, nll
        case promptTokens = "prompt_tokens", kvStoredBytes = "kv_stored_bytes", kvReadBytesPerStep = "kv_read_bytes_per_step"
        case kvIdealReadBytesPerStep = "kv_ideal_read_bytes_per_step"
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
        kvIdealReadBytesPerStep = statistics.idealBytesReadLastStep
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
        try c.encode(prompt, forKey: .prompt)
        try c.encode(sweep, forKey: .sweep)
        try c.encode(configuration, forKey: .configuration)
        try c.encode(plan, forKey: .plan)
        try c.encode(output, forKey: .output)
        try c.encode(expected, forKey: .expected)
        try c.encode(score, forKey: .score)
        try c.encode(substring, forKey: .substring)
        try c.encode(partial, forKey: .partial)
        try c.encode(kl, forKey: .kl)
        try c.encode(nll, forKey: .nll)
        try c.encode(promptTokens, forKey: .promptTokens)
        try c.encode(kvStoredBytes, forKey: .kvStoredBytes)
        try c.encode(kvReadBytesPerStep, forKey: .kvReadBytesPerStep)
        try c.encode(kvIdealReadBytesPerStep, forKey: .kvIdealReadBytesPerStep)
    }

    /// One JSON line (sorted keys), as `predictions.jsonl` holds it.
    public var jsonLine: Data {
        get throws { try jsonLineData(self) }
    }
}

/// `value` as one line of a JSON-lines file: sorted keys, slashes unescaped, a newline at the end.
func jsonLineData<T: Encodable>(_ value: T) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return try encoder.encode(value) + Data("\n".utf8)
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
        if FileManager.default.fileExists(atPath: url.path) {
            predictions = try Self.read(url)
            done = Set(predictions.map(\.id))
        } else {
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else { throw InferenceError("cannot create \(url.path)") }
        }
        handle = try FileHandle(forWritingTo: url)
        handle.seekToEndOfFile()
    }

    deinit { try? handle.close() }

    /// The predictions of a `predictions.jsonl` file.
    public static func read(_ url: URL) throws -> [EvalPrediction] {
        guard let data = FileManager.default.contents(atPath: url.path) else { throw InferenceError("cannot read \(url.path)") }
        return try data.split(separator: UInt8(ascii: "\n")).enumerated().map { number, line in
            guard let prediction = try? JSONDecoder().decode(EvalPrediction.self, from: Data(line)) else {
                throw InferenceError("\(url.path) line \(number + 1) is not a prediction; remove it or use another --out")
            }
            return prediction
        }
    }

    public func contains(_ id: String) -> Bool { done.contains(id) }

    public func append(_ prediction: EvalPrediction) throws {
        handle.write(try prediction.jsonLine)
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

/// The mean scores of one task × method × budget × length × configuration (one entry of `metrics.json`), each
/// accuracy with its sample count and 95 % interval.
public struct EvalMetric: Codable, Sendable, Equatable {
    public var task: String
    public var method: String
    public var budget: Int?
    public var length: Int
    /// The predictions' `configuration` (settings, method options, engine version).
    public var configuration: String?
    /// Prompts scored.
    public var count: Int
    /// Mean score × 100.
    public var accuracy: Double
    public var interval: ConfidenceInterval
    /// Passkey: substring match %, with its interval.
    public var substring: Double?
    public var substringInterval: ConfidenceInterval?
    public var partial: Double?
    public var kl: Double?
    public var perplexity: Double?
    public var kvReadBytesPerStep: Double
    public var kvIdealReadBytesPerStep: Double?

    enum CodingKeys: String, CodingKey {
        case task, method, budget, length, configuration, count, accuracy, interval, substring, partial, kl, perplexity
        case substringInterval = "substring_interval"
        case kvReadBytesPerStep = "kv_read_bytes_per_step", kvIdealReadBytesPerStep = "kv_ideal_read_bytes_per_step"
    }

    /// Groups predictions by task, method, budget, length and configuration, in the order they first appear;
    /// RULER's per-task groups are followed by their means over tasks (`rulerMeans`).
    public static func summarize(_ predictions: [EvalPrediction]) -> [EvalMetric] {
        let metrics = groupsInOrder(predictions, key: groupKey).map { group in
            let first = group[0], n = Double(group.count)
            func mean(_ values: [Double]) -> Double? { values.isEmpty ? nil : values.reduce(0, +) / Double(values.count) }
            let substrings = group.compactMap(\.substring)
            let ideal = group.compactMap(\.kvIdealReadBytesPerStep)
            return EvalMetric(task: first.task, method: first.method, budget: first.budget, length: first.length,
                              configuration: first.configuration, count: group.count,
                              accuracy: 100 * group.map(\.score).reduce(0, +) / n, interval: .of(group.map(\.score)),
                              substring: mean(substrings).map { 100 * $0 },
                              substringInterval: substrings.isEmpty ? nil : .of(substrings),
                              partial: mean(group.compactMap(\.partial)).map { 100 * $0 },
                              kl: mean(group.compactMap(\.kl)),
                              perplexity: mean(group.compactMap(\.nll)).map { exp($0) },
                              kvReadBytesPerStep: Double(group.map(\.kvReadBytesPerStep).reduce(0, +)) / n,
                              kvIdealReadBytesPerStep: ideal.count == group.count ? Double(ideal.reduce(0, +)) / n : nil)
        }
        return metrics + rulerMeans(predictions, tasks: metrics)
    }

    /// Full-cache accuracy (%) at or below which a RULER task counts as one the model itself cannot do.
    public static let unsolvedTaskAccuracy = 5.0

    /// Per method × budget × length × configuration of the RULER predictions: `ruler/mean`, the mean of the
    /// task accuracies, and `ruler/mean-solved`, the same over the tasks on which `full` (same length) scores above
    /// `unsolvedTaskAccuracy`. Intervals by bootstrap over prompts, resampled within each task.
    static func rulerMeans(_ predictions: [EvalPrediction], tasks metrics: [EvalMetric]) -> [EvalMetric] {
        let ruler = predictions.filter { $0.task.hasPrefix("ruler/") }
        return groupsInOrder(ruler) { "\($0.method)|\($0.budget ?? 0)|\($0.length)|\($0.configuration ?? "")" }.flatMap { group -> [EvalMetric] in
            let first = group[0]
            let byTask = groupsInOrder(group, key: \.task)
            let unsolved = Set(metrics.filter { $0.method == "full" && $0.length == first.length && $0.accuracy <= unsolvedTaskAccuracy }.map(\.task))
            let hasFull = metrics.contains { $0.method == "full" && $0.length == first.length && $0.task.hasPrefix("ruler/") }
            var means: [(String, [[EvalPrediction]])] = [("ruler/mean", byTask)]
            if hasFull { means.append(("ruler/mean-solved", byTask.filter { !unsolved.contains($0[0].task) })) }
            return means.compactMap { name, tasks in
                guard !tasks.isEmpty else { return nil }
                let strata = tasks.map { $0.map(\.score) }
                func meanOfMeans(_ s: [[Double]]) -> Double { s.map { $0.reduce(0, +) / Double($0.count) }.reduce(0, +) / Double(s.count) }
                let all = tasks.joined()
                return EvalMetric(task: name, method: first.method, budget: first.budget, length: first.length,
                                  configuration: first.configuration, count: all.count,
                                  accuracy: 100 * meanOfMeans(strata), interval: .bootstrap(strata: strata, statistic: meanOfMeans),
                                  kvReadBytesPerStep: Double(all.map(\.kvReadBytesPerStep).reduce(0, +)) / Double(all.count))
            }
        }
    }

    static func groupKey(_ p: EvalPrediction) -> String { "\(p.task)|\(p.method)|\(p.budget ?? 0)|\(p.length)|\(p.configuration ?? "")" }

    /// The method options of `configuration` (`key=value`, comma-separated; empty when none).
    public var options: String {
        (configuration ?? "").components(separatedBy: "; ").filter { $0.hasPrefix("kv-option ") }
            .map { String($0.dropFirst("kv-option ".count)) }.joined(separator: ",")
    }

    /// `accuracy [low–high] n=count`, for tables.
    public var accuracyText: String { String(format: "%.1f %@ n=%d", accuracy, interval.text, count) }
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
