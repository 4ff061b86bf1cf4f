/// Registry entries and option parsing of `hsa`, `rocket` and `rocket-mt`.
extension KVMethods {
    static let rocketOptions: [(String, String)] = [
        ("window", "SnapKV observation window w (default 32; rocket-mt 128)"),
        ("kernel", "SnapKV max-pooling kernel κ, odd (default 63)"),
        ("rho", "fixed split factor ρ in 0...1 instead of the adaptive one"),
        ("split", "budget planner: accuracy ([A], default) or efficiency ([E])"),
        ("page-round", "HSA page size P = √c2 rounded up (default, the paper) or to the nearest integer (nearest), k1 re-derived"),
        ("page", "override the HSA page size P"),
        ("k1", "override the head dimensions k1 used by HSA's page scores"),
        ("k2", "override the tokens k2 attended exactly per step"),
    ]
    static let hsaOptions: [(String, String)] = Array(rocketOptions.suffix(4))

    static let rocketMethods: [KVMethod] = [
        KVMethod(name: "hsa", summary: "Hybrid Sparse Attention alone (RocketKV stage 2, ρ = 0): full cache, page min/max scores on k1 dims, exact attention over t/2 tokens.",
                 options: hsaOptions, needsBudget: true) { context in
            HSAPolicy(shape: context.shape, plan: try hsaPlan(context))
        },
        KVMethod(name: "rocket", summary: "RocketKV: GQA-shared SnapKV eviction (κ = 63) at the end of the prompt, then HSA every decode step; budget split adaptively.",
                 options: rocketOptions, needsBudget: true) { context in
            RocketPolicy(shape: context.shape, plan: try rocketPlan(context, defaultWindow: 32))
        },
        KVMethod(name: "rocket-mt", summary: "RocketKV-MT: keeps the full cache, re-selects the stage-1 subset from all of it every turn, HSA over that subset.",
                 options: rocketOptions, needsBudget: true) { context in
            RocketMTPolicy(shape: context.shape, plan: try rocketPlan(context, defaultWindow: 128))
        },
    ]

    /// The plan of `rocket`/`rocket-mt` for a request: `S = promptLength + maxNewTokens` (§16.3).
    public static func rocketPlan(_ context: KVMethodContext, defaultWindow: Int = 32) throws -> RocketPlan {
        let t = try context.requiredBudget()
        let d = context.shape.headDim
        let window = try context.intOption("window", default: defaultWindow, range: 1...65536)
        let kernel = try context.intOption("kernel", default: 63, range: 1...65535)
        guard kernel % 2 == 1 else { throw KVMethodError("option kernel=\(kernel) must be odd") }
        let rho: Double? = context.options["rho"] == nil ? nil : try context.doubleOption("rho", default: 0, range: 0...1)
        var plan: RocketPlan
        switch context.options["split"] ?? "accuracy" {
        case "accuracy", "A", "a":
            plan = .accuracy(sequenceLength: max(1, context.promptLength + context.maxNewTokens), budget: t,
                             maxNewTokens: context.maxNewTokens, headDim: d, rho: rho, window: window, kernel: kernel)
        case "efficiency", "E", "e":
            plan = .efficiency(promptLength: max(1, context.promptLength), budget: t, maxNewTokens: context.maxNewTokens,
                               headDim: d, rho: rho, window: window, kernel: kernel)
        case let other:
            throw KVMethodError("option split=\(other) must be accuracy or efficiency")
        }
        try applyOverrides(&plan, context)
        guard plan.promptBudget >= 1 else {
            throw KVMethodError("the budget leaves no prompt tokens (B_p = \(plan.promptBudget)); raise --budget or lower the new-token count")
        }
        return plan
    }

    /// The plan of `hsa` (§16.7).
    public static func hsaPlan(_ context: KVMethodContext) throws -> RocketPlan {
        var plan = RocketPlan.hsaOnly(sequenceLength: max(1, context.promptLength + context.maxNewTokens),
                                      budget: try context.requiredBudget(), maxNewTokens: context.maxNewTokens,
                                      headDim: context.shape.headDim)
        try applyOverrides(&plan, context)
        return plan
    }

    private static func applyOverrides(_ plan: inout RocketPlan, _ context: KVMethodContext) throws {
        switch context.options["page-round"] ?? "up" {
        case "up": break
        case "nearest": plan.roundPageToNearest(headDim: context.shape.headDim)
        case let other: throw KVMethodError("option page-round=\(other) must be up or nearest")
        }
        plan.pageSize = try context.intOption("page", default: plan.pageSize, range: 1...65536)
        plan.k1 = try context.intOption("k1", default: plan.k1, range: 1...context.shape.headDim)
        plan.k2 = try context.intOption("k2", default: plan.k2, range: 1...(1 << 30))
    }
}
