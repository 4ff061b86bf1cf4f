/// One shared-context session for `rocketkv eval multiturn` (SCBench's key-value retrieval, in plain text):
/// a list of `Key <word-word> has value <7 digits>.` lines filling the context, then one question per turn.
public struct MultiturnSession: Sendable {
    /// Instruction, the pairs and the first question (BOS included).
    public let firstPrompt: [Int]
    /// The questions of turns 2…n, as tokens to feed after the previous answer.
    public let laterQuestions: [[Int]]
    /// The value each turn asks for.
    public let values: [String]

    static let intro = "Below is a list of keys and their values. Remember them: I will ask for several of them, one at a time.\n\n"

    static func question(_ key: String) -> String { "\n\nQuestion: What is the value of key \(key)? Answer: Key \(key) has value" }

    /// A session of about `tokens` tokens in all (the later turns take about 30 tokens each).
    public static func make<G: RandomNumberGenerator>(haystack: Haystack, tokens: Int, turns: Int, tokenizer: Tokenizer,
                                                      using rng: inout G) -> MultiturnSession {
        let vocabulary = Ruler.words(haystack)
        let pairs = (0..<(tokens / 8)).map { _ in
            ("\(vocabulary.randomElement(using: &rng)!)-\(vocabulary.randomElement(using: &rng)!)",
             String(Int.random(in: 1_000_000...9_999_999, using: &rng)))
        }
        func list(_ n: Int) -> String { intro + pairs.prefix(n).map { "Key \($0.0) has value \($0.1)." }.joined(separator: "\n") }
        let count = max(turns, min(pairs.count, Ruler.largestFitting(tokens: tokens - 30 * turns, tokenizer: tokenizer, list)))
        // One pair from each of `turns` equal parts of the list, asked in random order.
        var asked = (0..<turns).map { t in t * count / turns + Int.random(in: 0..<max(1, count / turns), using: &rng) }
        asked.shuffle(using: &rng)
        let chosen = asked.map { pairs[$0] }
        return MultiturnSession(
            firstPrompt: tokenizer.encode(list(count) + question(chosen[0].0), addSpecial: true, parseSpecial: false),
            laterQuestions: chosen.dropFirst().map { tokenizer.encode(question($0.0), addSpecial: false, parseSpecial: false) },
            values: chosen.map(\.1))
    }
}
