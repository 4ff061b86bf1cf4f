import Foundation

/// What a KV method is told when a sequence starts: the attention of the model's layers, the token budget
/// and the request's size (the budget split of the paper depends on prompt length and generation length).
public struct KVMethodContext: Sendable {
    /// Every layer of the model, in order. A method instance is given only layers of one shape, all global
    /// (`KVMethods.make` routes the others).
    public var layers: [LayerAttention]
    /// Token budget per KV group per decode step (K+V pairs read), or nil for methods without one.
    public var budget: Int?
    /// Prompt length of the first turn, in tokens.
    public var promptLength: Int
    /// Tokens to be generated (reserved in the budget split).
    public var maxNewTokens: Int
    /// Method options from `--kv-option key=value`.
    public var options: [String: String]
    /// How every layer's cache stores its key and value rows (`--kv-type`).
    public var kvType: KVCacheType
    /// True when the model has layers besides `layers` that this method instance does not serve (the
    /// sliding-window layers of a hybrid model such as Gemma 3).
    public var servesSomeLayersOnly = false
    /// Bytes of weights the model reads per decoded token, or nil when unknown: a planner that prices its own
    /// reads against the whole step's (`rocket`'s `scores=auto`) needs it.
    public var weightBytesPerToken: Int?

    public init(layers: [LayerAttention], budget: Int?, promptLength: Int, maxNewTokens: Int, options: [String: String] = [:],
                kvType: KVCacheType = .f16) {
        self.layers = layers
        self.budget = budget
        self.promptLength = promptLength
        self.maxNewTokens = maxNewTokens
        self.options = options
        self.kvType = kvType
    }

    /// A context for a sequence of `model`: its layers and the bytes of weights it reads per token.
    public init(model: LanguageModel, budget: Int?, promptLength: Int, maxNewTokens: Int, options: [String: String] = [:],
                kvType: KVCacheType = .f16) {
        self.init(layers: model.config.layerAttention, budget: budget, promptLength: promptLength, maxNewTokens: maxNewTokens,
                  options: options, kvType: kvType)
        weightBytesPerToken = model.weightBytesPerToken
    }

    /// A context whose layers are `shape.layers` global layers of that shape, stored as `shape.kvType`.
    public init(shape: AttentionShape, budget: Int?, promptLength: Int, maxNewTokens: Int, options: [String: String] = [:]) {
        self.init(layers: shape.layerAttention, budget: budget, promptLength: promptLength, maxNewTokens: maxNewTokens, options: options,
                  kvType: shape.kvType)
    }

    /// The one shape of the layers a method instance serves.
    public var shape: AttentionShape {
        precondition(!layers.isEmpty && layers.allSatisfy { $0 == layers[0] && $0.kind == .global },
                     "a method serves global layers of one shape")
        return AttentionShape(layers: layers.count, like: layers[0], kvType: kvType)
    }

    /// An integer option's value: as given, or its declared default (`computed` when it depends on the request).
    public func int(_ option: KVOption, computed: Int? = nil, range: ClosedRange<Int>) throws -> Int {
        guard let text = options[option.key] else {
            guard let value = computed ?? option.defaultValue.flatMap({ Int($0) }) else { preconditionFailure("option \(option.key) has no default") }
            return value
        }
        guard let v = Int(text), range.contains(v) else {
            throw KVMethodError("option \(option.key)=\(text) must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return v
    }

    /// A floating-point option's value: as given or its declared default.
    public func number(_ option: KVOption, range: ClosedRange<Double>) throws -> Double {
        guard let text = options[option.key] else {
            guard let value = option.defaultValue.flatMap({ Double($0) }) else { preconditionFailure("option \(option.key) has no default") }
            return value
        }
        guard let v = Double(text), range.contains(v) else {
            throw KVMethodError("option \(option.key)=\(text) must be a number in \(range.lowerBound)...\(range.upperBound)")
        }
        return v
    }

    /// A choice among named values: as given or its declared default.
    public func choice(_ option: KVOption, among choices: [String]) throws -> String {
        let value = options[option.key] ?? option.defaultValue ?? choices[0]
        guard choices.contains(value) else {
            throw KVMethodError("option \(option.key)=\(value) must be \(choices.joined(separator: " or "))")
        }
        return value
    }

    /// The budget, required and at least `minimum`.
    public func requiredBudget(minimum: Int = 16) throws -> Int {
        guard let budget else { throw KVMethodError("this method needs --budget") }
        guard budget >= minimum else { throw KVMethodError("--budget \(budget) is below the minimum of \(minimum) tokens") }
        return budget
    }
}

/// One `--kv-option` of a method, declared once with the method: the registry's help text and the value a
/// policy gets both read its default from here.
public struct KVOption: Sendable, CustomStringConvertible {
    public let key: String
    public let help: String
    /// The default as a value (`"4"`, `"0.5"`, `"accuracy"`), or nil when it is computed per request.
    public let defaultValue: String?
    /// How the default reads in help text.
    public let defaultText: String?

    /// An option with a fixed default.
    public init(_ key: String, default value: CustomStringConvertible, _ help: String) {
        self.key = key
        self.help = help
        defaultValue = value.description
        defaultText = value.description
    }

    /// An option whose default is computed per request (`formula` says how) or that has none.
    public init(_ key: String, computed formula: String?, _ help: String) {
        self.key = key
        self.help = help
        defaultValue = nil
        defaultText = formula
    }

    /// The help line: meaning and default.
    public var description: String { defaultText.map { "\(help) (default \($0))" } ?? help }
}

/// A bad method name, option or budget (a user error).
public struct KVMethodError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A KV method as the CLI and the evaluator see it: a name, a description, its options, and a factory.
/// Each method declares its own in its file (`static let method`).
public struct KVMethod: Sendable {
    public let name: String
    public let summary: String
    public let options: [KVOption]
    public let needsBudget: Bool
    public let make: @Sendable (KVMethodContext) throws -> KVPolicy

    public init(name: String, summary: String, options: [KVOption] = [], needsBudget: Bool,
                make: @escaping @Sendable (KVMethodContext) throws -> KVPolicy) {
        self.name = name
        self.summary = summary
        self.options = options
        self.needsBudget = needsBudget
        self.make = make
    }
}

/// The registry of KV methods by CLI name: the built-in ones, plus any a program registers. Adding a method
/// takes its own file (a policy and its `KVMethod`) and, when it is built in, its name in `builtIn`.
public enum KVMethods {
    static let builtIn: [KVMethod] = [
        FullKV.method, ExactTopK.method, StreamingLLM.method, H2O.method, SnapKV.method, Quest.method, SparQ.method,
        HSAPolicy.method, RocketPolicy.method, RocketMTPolicy.method,
    ]
    private static let lock = NSLock()
    nonisolated(unsafe) private static var registered: [KVMethod] = []

    /// Every method: the built-in ones, then the registered ones in order.
    public static var all: [KVMethod] { lock.withLock { builtIn + registered } }

    /// Adds a method (defined outside the library) under its name; a name already taken is an error.
    public static func register(_ method: KVMethod) throws {
        try lock.withLock {
            guard !(builtIn + registered).contains(where: { $0.name == method.name }) else {
                throw KVMethodError("a KV method named '\(method.name)' exists already")
            }
            registered.append(method)
        }
    }

    public static func named(_ name: String) throws -> KVMethod {
        let all = self.all
        guard let method = all.first(where: { $0.name == name }) else {
            throw KVMethodError("unknown KV method '\(name)' (known: \(all.map(\.name).joined(separator: ", ")))")
        }
        return method
    }

    /// The options of `all` that method `name` has: options given to a run of several methods go to each method
    /// that has them (so `full` runs plain beside a tuned `rocket`). `name` may be a variant,
    /// `method+key=value+...` (see `variant(_:)`), whose own options override those of `all`.
    public static func options(_ all: [String: String], for name: String) throws -> [String: String] {
        let (base, own) = try variant(name)
        let known = Set(try named(base).options.map(\.key))
        if let unknown = own.keys.sorted().first(where: { !known.contains($0) }) {
            throw KVMethodError("option '\(unknown)' of '\(name)': method \(base) has no such option")
        }
        return all.filter { known.contains($0.key) }.merging(own) { _, variant in variant }
    }

    /// A method with options of its own, written `name+key=value+key=value` (e.g. `rocket+votes=shared`), as a
    /// sweep lists it beside the plain method so that both share one prefill per prompt: the method's name and
    /// those options. A plain name has none.
    public static func variant(_ spec: String) throws -> (name: String, options: [String: String]) {
        let parts = spec.split(separator: "+", omittingEmptySubsequences: false).map(String.init)
        var options: [String: String] = [:]
        for part in parts.dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2, !pair[0].isEmpty, !pair[1].isEmpty else {
                throw KVMethodError("'\(spec)': each option after '+' must be key=value")
            }
            guard options.updateValue(pair[1], forKey: pair[0]) == nil else { throw KVMethodError("'\(spec)': option '\(pair[0])' given twice") }
        }
        return (parts[0], options)
    }

    /// Throws unless every option name is one that at least one of `methods` (plain names or variants) has.
    public static func checkOptions(_ options: [String: String], usedBy methods: [String]) throws {
        let known = Set(try methods.flatMap { try named(try variant($0).name).options.map(\.key) })
        if let unknown = options.keys.sorted().first(where: { !known.contains($0) }) {
            throw KVMethodError("option '\(unknown)': none of the methods \(methods.joined(separator: ",")) has it")
        }
    }

    /// Builds the cache of one sequence, checking the option names against the method's list.
    ///
    /// When the context's layers are all global and alike, that is the method's policy itself. Otherwise the
    /// method runs on the global layers (one instance per distinct shape, each with the whole budget per KV
    /// group) and every sliding-window layer keeps a bounded window of its own (`SlidingWindowKV`), behind
    /// one `LayeredKV` that routes each layer to its cache.
    public static func make(_ name: String, context: KVMethodContext) throws -> KVPolicy {
        let method = try named(name)
        let known = Set(method.options.map(\.key))
        if let unknown = context.options.keys.sorted().first(where: { !known.contains($0) }) {
            throw KVMethodError("method '\(name)' has no option '\(unknown)'" + (known.isEmpty ? "" : " (options: \(known.sorted().joined(separator: ", ")))"))
        }
        if method.needsBudget { _ = try context.requiredBudget() }
        guard let first = context.layers.first else { throw KVMethodError("the model has no attention layers") }
        for layer in context.layers { try context.kvType.check(headDim: layer.headDim) }
        if context.layers.allSatisfy({ $0 == first && $0.kind == .global }) { return try method.make(context) }
        return try LayeredKV(layers: context.layers, kvType: context.kvType) { layers in
            var sub = context
            sub.layers = layers
            sub.servesSomeLayersOnly = layers.count < context.layers.count
            return try method.make(sub)
        }
    }
}

/// `round` as the spec's budget formulas mean it: to nearest, halves away from zero, in Double (§16.7).
func roundHalfAway(_ x: Double) -> Int { Int(x.rounded(.toNearestOrAwayFromZero)) }
