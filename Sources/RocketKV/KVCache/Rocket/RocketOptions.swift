/// The `--kv-option`s of `hsa`, `rocket` and `rocket-mt`, and the plan each builds from them.
extension RocketPlan {
    static let kernelOption = KVOption("kernel", default: 63, "SnapKV max-pooling kernel κ, odd")
    static let rhoOption = KVOption("rho", computed: "adaptive", "fixed split factor ρ in 0...1 instead of the adaptive one")
    static let splitOption = KVOption("split", default: "accuracy", "budget planner: accuracy ([A]) or efficiency ([E])")
    static let pageRoundOption = KVOption("page-round", default: "up",
                                          "HSA page size P = √c2 rounded up (the paper) or to the nearest integer (nearest), k1 re-derived")
    static let pageOption = KVOption("page", computed: "from the budget planner", "override the HSA page size P")
    static let k1Option = KVOption("k1", computed: "from the budget planner", "override the head dimensions k1 used by HSA's page scores")
    static let k2Option = KVOption("k2", computed: "from the budget planner", "override the tokens k2 attended exactly per step")
    static let votesOption = KVOption("votes", default: "auto",
                                      "stage-1 votes: each layer its own window's (layer, the paper), summed over the method's layers by position (shared), or auto: shared on a hybrid model's global layers, layer otherwise")

    static let scoresOption = KVOption("scores", default: "auto",
                                       "stage 2's token scores: estimate (HSA's page bounds on k1 dimensions, the paper), exact (q·k on every token stage 1 kept: P = 1, k1 = d), or auto: exact where that adds at most 5 % to the bytes a decode step reads (weights included), estimate otherwise; page and k1 override it")

    /// The options of `hsa`: the HSA overrides.
    static let hsaOptions = [pageRoundOption, pageOption, k1Option, k2Option]

    /// The options of `rocket` and `rocket-mt` (their observation windows differ).
    static func rocketOptions(window: KVOption) -> [KVOption] { [window, kernelOption, rhoOption, splitOption, votesOption, scoresOption] + hsaOptions }

    /// The plan of `rocket`/`rocket-mt` for a request: `S = promptLength + maxNewTokens` (§16.3).
    public static func rocket(_ context: KVMethodContext, window windowOption: KVOption) throws -> RocketPlan {
        let t = try context.requiredBudget()
        let d = context.shape.headDim
        let window = try context.int(windowOption, range: 1...65536)
        let kernel = try context.int(kernelOption, range: 1...65535)
        guard kernel % 2 == 1 else { throw KVMethodError("option kernel=\(kernel) must be odd") }
        let rho: Double? = context.options[rhoOption.key] == nil ? nil : try context.number(rhoOption, range: 0...1)
        var named = context   // the planners' letters [A]/[E] name them too
        if let split = named.options[splitOption.key] {
            named.options[splitOption.key] = ["A": "accuracy", "a": "accuracy", "E": "efficiency", "e": "efficiency"][split] ?? split
        }
        var plan: RocketPlan
        switch try named.choice(splitOption, among: ["accuracy", "efficiency"]) {
        case "accuracy":
            plan = .accuracy(sequenceLength: max(1, context.promptLength + context.maxNewTokens), budget: t,
                             maxNewTokens: context.maxNewTokens, headDim: d, rho: rho, window: window, kernel: kernel)
        default:
            plan = .efficiency(promptLength: max(1, context.promptLength), budget: t, maxNewTokens: context.maxNewTokens,
                               headDim: d, rho: rho, window: window, kernel: kernel)
        }
        try plan.roundPage(context)
        switch try context.choice(scoresOption, among: ["auto", "estimate", "exact"]) {
        case "exact": plan.scoreExactly(headDim: d)
        case "auto" where plan.exactScoresAreCheap(context.shape, weightBytesPerToken: context.weightBytesPerToken):
            plan.scoreExactly(headDim: d)
        default: break
        }
        try plan.applyOverrides(context)
        let votes = try context.choice(votesOption, among: ["auto"] + StageOneVotes.allCases.map(\.rawValue))
        plan.votes = StageOneVotes(rawValue: votes) ?? (context.servesSomeLayersOnly ? .shared : .layer)
        guard plan.promptBudget >= 1 else {
            throw KVMethodError("the budget leaves no prompt tokens (B_p = \(plan.promptBudget)); raise --budget or lower the new-token count")
        }
        return plan
    }

    /// The plan of `hsa` (§16.7).
    public static func hsa(_ context: KVMethodContext) throws -> RocketPlan {
        var plan = RocketPlan.hsaOnly(sequenceLength: max(1, context.promptLength + context.maxNewTokens),
                                      budget: try context.requiredBudget(), maxNewTokens: context.maxNewTokens,
                                      headDim: context.shape.headDim)
        try plan.roundPage(context)
        try plan.applyOverrides(context)
        return plan
    }

    private mutating func roundPage(_ context: KVMethodContext) throws {
        if try context.choice(Self.pageRoundOption, among: ["up", "nearest"]) == "nearest" {
            roundPageToNearest(headDim: context.shape.headDim)
        }
    }

    /// The explicit `page`, `k1` and `k2` (the scores are exact only while both P = 1 and k1 = d).
    private mutating func applyOverrides(_ context: KVMethodContext) throws {
        pageSize = try context.int(Self.pageOption, computed: pageSize, range: 1...65536)
        k1 = try context.int(Self.k1Option, computed: k1, range: 1...context.shape.headDim)
        k2 = try context.int(Self.k2Option, computed: k2, range: 1...(1 << 30))
        exactScores = pageSize == 1 && k1 == context.shape.headDim
    }
}
