/// What a KV method is told when a sequence starts: the model's attention shape, the token budget and
/// the request's size (the budget split of the paper depends on prompt length and generation length).
public struct KVMethodContext: Sendable {
    public var shape: AttentionShape
    /// Token budget per KV group per decode step (K+V pairs read), or nil for methods without one.
    public var budget: Int?
    /// Prompt length of the first turn, in tokens.
    public var promptLength: Int
    /// Tokens to be generated (reserved in the budget split).
    public var maxNewTokens: Int
    /// Method options from `--kv-option key=value`.
    public var options: [String: String]

    public init(shape: AttentionShape, budget: Int?, promptLength: Int, maxNewTokens: Int, options: [String: String] = [:]) {
        self.shape = shape
        self.budget = budget
        self.promptLength = promptLength
        self.maxNewTokens = maxNewTokens
        self.options = options
    }

    /// An integer option, with its default and allowed range.
    public func intOption(_ key: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = options[key] else { return value }
        guard let v = Int(text), range.contains(v) else {
            throw KVMethodError("option \(key)=\(text) must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return v
    }

    /// A floating-point option, with its default and allowed range.
    public func doubleOption(_ key: String, default value: Double, range: ClosedRange<Double>) throws -> Double {
        guard let text = options[key] else { return value }
        guard let v = Double(text), range.contains(v) else {
            throw KVMethodError("option \(key)=\(text) must be a number in \(range.lowerBound)...\(range.upperBound)")
        }
        return v
    }

    /// The budget, required and at least `minimum`.
    public func requiredBudget(minimum: Int = 16) throws -> Int {
        guard let budget else { throw KVMethodError("this method needs --budget") }
        guard budget >= minimum else { throw KVMethodError("--budget \(budget) is below the minimum of \(minimum) tokens") }
        return budget
    }
}

/// A bad method name, option or budget (a user error).
public struct KVMethodError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A KV method as the CLI and the evaluator see it: a name, a description, its options, and a factory.
public struct KVMethod: Sendable {
    public let name: String
    public let summary: String
    /// `(key, meaning and default)` for `rocketkv methods`.
    public let options: [(String, String)]
    public let needsBudget: Bool
    public let make: @Sendable (KVMethodContext) throws -> KVPolicy

    public init(name: String, summary: String, options: [(String, String)] = [], needsBudget: Bool,
                make: @escaping @Sendable (KVMethodContext) throws -> KVPolicy) {
        self.name = name
        self.summary = summary
        self.options = options
        self.needsBudget = needsBudget
        self.make = make
    }
}

/// The registry of KV methods by CLI name. Adding a method means adding one entry here and one file.
public enum KVMethods {
    public static let all: [KVMethod] = [
        KVMethod(name: "full", summary: "Full KV cache, dense attention over every token (the baseline).", needsBudget: false) { context in
            FullKV(shape: context.shape)
        },
        // ---- Baselines (Sources/RocketKV/KVCache/Baselines) ----
        KVMethod(name: "topk", summary: "Exact-TopK oracle: full cache, each query head attends to its t highest-scoring tokens; traffic reported as the ideal 2d·t.",
                 needsBudget: true) { context in
            ExactTopK(shape: context.shape, budget: try context.requiredBudget())
        },
        KVMethod(name: "streaming", summary: "StreamingLLM: attention sinks plus the most recent tokens, t in all; the rest is evicted.",
                 options: [("sinks", "number of sink tokens kept from the start (default 4)")], needsBudget: true) { context in
            let budget = try context.requiredBudget()
            return StreamingLLM(shape: context.shape, budget: budget, sinks: try context.intOption("sinks", default: 4, range: 0...(budget - 1)))
        },
        KVMethod(name: "h2o", summary: "H2O: heavy hitters by accumulated attention (summed over the group) plus recent tokens, t in all.",
                 options: [("heavy", "fraction of the budget for heavy hitters, the rest recent (default 0.5)")], needsBudget: true) { context in
            H2O(shape: context.shape, budget: try context.requiredBudget(),
                heavyFraction: try context.doubleOption("heavy", default: 0.5, range: 0...1))
        },
        KVMethod(name: "snapkv", summary: "SnapKV (original): per query head, window votes with max pooling keep t/G prompt tokens each; generated tokens appended.",
                 options: [("window", "observation window in tokens (default 32)"), ("kernel", "max-pooling kernel size (default 7)")],
                 needsBudget: true) { context in
            SnapKV(shape: context.shape, budget: try context.requiredBudget(),
                   window: try context.intOption("window", default: 32, range: 1...100_000),
                   kernel: try context.intOption("kernel", default: 7, range: 1...1001))
        },
        KVMethod(name: "quest", summary: "Quest: page key min/max upper bounds summed over the group choose pages attended exactly; full cache kept.",
                 options: [("page-size", "tokens per page (default max(1, round(2S/t)))"), ("pages", "pages attended per step (default max(1, round(t/(2·page-size))))")],
                 needsBudget: true) { context in
            let budget = try context.requiredBudget(), s = context.promptLength + context.maxNewTokens
            let pageSize = try context.intOption("page-size", default: Quest.defaultPageSize(sequenceLength: s, budget: budget), range: 1...1_000_000)
            let pages = try context.intOption("pages", default: Quest.defaultPages(budget: budget, pageSize: pageSize), range: 1...1_000_000)
            return Quest(shape: context.shape, pageSize: pageSize, pagesPerStep: pages)
        },
        KVMethod(name: "sparq", summary: "SparQ: top-r query dimensions estimate scores, top-k tokens attended exactly, mean-value correction; keys stored twice.",
                 options: [("rank", "query dimensions used (default clamp(round(d·t/S), 1, d))"), ("tokens", "tokens attended per step (default t/2)"),
                           ("mean", "1: mean-value interpolation (default), 0: off")], needsBudget: true) { context in
            let budget = try context.requiredBudget(), d = context.shape.headDim, s = context.promptLength + context.maxNewTokens
            return SparQ(shape: context.shape,
                         rank: try context.intOption("rank", default: SparQ.defaultRank(headDim: d, budget: budget, sequenceLength: max(1, s)), range: 1...d),
                         tokensPerStep: try context.intOption("tokens", default: max(1, budget / 2), range: 1...1_000_000),
                         meanValue: try context.intOption("mean", default: 1, range: 0...1) == 1)
        },
    ] + rocketMethods

    public static func named(_ name: String) throws -> KVMethod {
        guard let method = all.first(where: { $0.name == name }) else {
            throw KVMethodError("unknown KV method '\(name)' (known: \(all.map(\.name).joined(separator: ", ")))")
        }
        return method
    }

    /// The options of `all` that method `name` has: options given to a run of several methods go to each method
    /// that has them (so `full` runs plain beside a tuned `rocket`).
    public static func options(_ all: [String: String], for name: String) throws -> [String: String] {
        let known = Set(try named(name).options.map(\.0))
        return all.filter { known.contains($0.key) }
    }

    /// Throws unless every option name is one that at least one of `methods` has.
    public static func checkOptions(_ options: [String: String], usedBy methods: [String]) throws {
        let known = Set(try methods.flatMap { try named($0).options.map(\.0) })
        if let unknown = options.keys.sorted().first(where: { !known.contains($0) }) {
            throw KVMethodError("option '\(unknown)': none of the methods \(methods.joined(separator: ",")) has it")
        }
    }

    /// Builds the policy for one sequence, checking the option names against the method's list.
    public static func make(_ name: String, context: KVMethodContext) throws -> KVPolicy {
        let method = try named(name)
        let known = Set(method.options.map(\.0))
        if let unknown = context.options.keys.sorted().first(where: { !known.contains($0) }) {
            throw KVMethodError("method '\(name)' has no option '\(unknown)'" + (known.isEmpty ? "" : " (options: \(known.sorted().joined(separator: ", ")))"))
        }
        if method.needsBudget { _ = try context.requiredBudget() }
        return try method.make(context)
    }
}
