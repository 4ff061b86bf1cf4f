/// The KV-cache method of a sequence: a registered method name (`KVMethods`), its token budget and options,
/// and how its cache stores key and value rows.
public struct KVConfiguration: Hashable, Sendable, CustomStringConvertible {
    public var method: String
    /// K+V pairs read per KV group per decode step; nil for methods without a budget.
    public var budget: Int?
    public var options: [String: String]
    /// The row type of the cache (f16, or Q8_0/Q4_0 blocks).
    public var kvType: KVCacheType

    public init(method: String = "full", budget: Int? = nil, options: [String: String] = [:], kvType: KVCacheType = .f16) {
        self.method = method
        self.budget = budget
        self.options = options
        self.kvType = kvType
    }

    /// Throws unless the method exists, its options are its own and its budget is given where needed and
    /// fits `model`'s context.
    public func validate(for model: LanguageModel) throws {
        let method = try KVMethods.named(self.method)
        if method.needsBudget && budget == nil { throw KVMethodError("KV method '\(self.method)' needs a budget") }
        if let budget, budget < 16 || budget > model.config.contextLength {
            throw KVMethodError("budget \(budget) must be between 16 and the model's context of \(model.config.contextLength) tokens")
        }
        let known = Set(method.options.map(\.key))
        if let unknown = options.keys.sorted().first(where: { !known.contains($0) }) {
            throw KVMethodError("KV method '\(self.method)' has no option '\(unknown)'")
        }
        for layer in model.config.layerAttention { try kvType.check(headDim: layer.headDim) }
    }

    /// The policy of a new sequence whose first prompt has `promptLength` tokens.
    public func makePolicy(model: LanguageModel, promptLength: Int, maxNewTokens: Int) throws -> KVPolicy {
        try validate(for: model)
        let context = KVMethodContext(model: model, budget: budget, promptLength: promptLength, maxNewTokens: maxNewTokens,
                                      options: options, kvType: kvType)
        return try KVMethods.make(method, context: context)
    }

    /// `method@budget,key=value…`, then `,kv-type=…` unless the rows are f16.
    public var description: String {
        method + (budget.map { "@\($0)" } ?? "") + options.sorted { $0.key < $1.key }.map { ",\($0.key)=\($0.value)" }.joined()
            + (kvType == .f16 ? "" : ",kv-type=\(kvType)")
    }
}
