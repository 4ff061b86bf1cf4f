/// One shared-context session for `rocketkv eval multiturn` (SCBench's multi-turn retrieval, sized for small
/// models): essay text with one RULER needle (`<word-word>` key, 7-digit value) in each of `turns` equal parts
/// of it, then one question per turn, each for a different key, in an order unrelated to their positions.
public struct MultiturnSession: Sendable {
    /// Instruction, the haystack with its needles and the first question (BOS included).
    public let firstPrompt: [Int]
    /// The questions of turns 2…n, as tokens to feed after the previous answer.
    public let laterQuestions: [[Int]]
    /// The value each turn asks for.
    public let values: [String]

    /// A session whose first prompt has at most `tokens - 40 · (turns - 1)` tokens, leaving room for the later turns.
    public static func make<G: RandomNumberGenerator>(haystack: Haystack, tokens: Int, turns: Int, tokenizer: Tokenizer,
                                                      using rng: inout G) -> MultiturnSession {
        let vocabulary = Ruler.words(haystack)
        var keys: [String] = []
        while keys.count < turns {
            let key = Ruler.randomKey(vocabulary, using: &rng)
            if !keys.contains(key) { keys.append(key) }
        }
        let values = keys.map { _ in Ruler.randomNumber(using: &rng) }
        // Needle t sits at a random depth inside part t of the haystack.
        let depths = (0..<turns).map { (Double($0) + Double.random(in: 0.05...0.95, using: &rng)) / Double(turns) }
        var order = Array(0..<turns)
        order.shuffle(using: &rng)
        let first = Ruler.fit(tokens: tokens - 40 * (turns - 1), tokenizer: tokenizer) { count in
            var filler = haystack.prefix(words: count)
            for t in (0..<turns).reversed() { filler.insert(Ruler.needle(keys[t], values[t]), at: Int(Double(filler.count) * depths[t])) }
            return Ruler.intro + filler.joined(separator: " ") + Ruler.singleQuestion(keys[order[0]])
        }
        return MultiturnSession(
            firstPrompt: tokenizer.encode(first, addSpecial: true, parseSpecial: false),
            laterQuestions: order.dropFirst().map { tokenizer.encode(Ruler.singleQuestion(keys[$0]), addSpecial: false, parseSpecial: false) },
            values: order.map { values[$0] })
    }
}
