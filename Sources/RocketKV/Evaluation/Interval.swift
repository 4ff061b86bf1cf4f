import Foundation

/// A 95 % confidence interval of an accuracy, in percent, and how it was computed.
public struct ConfidenceInterval: Codable, Sendable, Equatable {
    public var low: Double
    public var high: Double
    /// `wilson` (a proportion of 0/1 scores) or `bootstrap` (a mean of per-prompt scores, resampled over prompts).
    public var method: String

    public init(low: Double, high: Double, method: String) {
        self.low = low
        self.high = high
        self.method = method
    }

    /// The Wilson score interval of `successes` out of `n` (z = 1.96), in percent.
    public static func wilson(successes: Double, n: Int) -> ConfidenceInterval {
        guard n > 0 else { return ConfidenceInterval(low: 0, high: 100, method: "wilson") }
        let z = 1.959963984540054, nn = Double(n), p = successes / nn
        let center = (p + z * z / (2 * nn)) / (1 + z * z / nn)
        let half = z / (1 + z * z / nn) * (p * (1 - p) / nn + z * z / (4 * nn * nn)).squareRoot()
        return ConfidenceInterval(low: 100 * max(0, center - half), high: 100 * min(1, center + half), method: "wilson")
    }

    /// Resamples taken by `bootstrap`.
    public static let bootstrapResamples = 2000

    /// The percentile bootstrap interval of `statistic` over prompts: each resample draws, within every stratum
    /// independently, as many prompts as it has, with replacement. Seeded, so the same scores give the same
    /// interval. Scores in [0, 1]; the interval in percent.
    public static func bootstrap(strata: [[Double]], statistic: ([[Double]]) -> Double) -> ConfidenceInterval {
        var rng = Xoshiro256StarStar(seed: 0x5EED_B007)
        var estimates: [Double] = []
        estimates.reserveCapacity(bootstrapResamples)
        for _ in 0..<bootstrapResamples {
            let resample = strata.map { scores in scores.map { _ in scores[Int(rng.next() % UInt64(scores.count))] } }
            estimates.append(statistic(resample))
        }
        estimates.sort()
        func percentile(_ q: Double) -> Double { estimates[min(estimates.count - 1, Int((q * Double(estimates.count)).rounded(.down)))] }
        return ConfidenceInterval(low: 100 * percentile(0.025), high: 100 * percentile(0.975), method: "bootstrap")
    }

    /// Wilson when every score is 0 or 1, else the bootstrap of the mean over prompts.
    public static func of(_ scores: [Double]) -> ConfidenceInterval {
        if scores.allSatisfy({ $0 == 0 || $0 == 1 }) { return wilson(successes: scores.reduce(0, +), n: scores.count) }
        return bootstrap(strata: [scores]) { $0[0].reduce(0, +) / Double($0[0].count) }
    }

    /// `[low–high]` rounded to whole percent.
    public var text: String { String(format: "[%.0f–%.0f]", low, high) }
}
