/// RULER-style synthetic long-context tasks (spec §11.5), generated from a seed: needle variants, variable
/// tracking, common-words and frequent-words extraction. Prompts are raw text that ends with the start of
/// the answer, as RULER does for base models; scores are RULER's "all" string match (the fraction of the
/// expected strings found in the output, case-insensitive).
public enum Ruler {
    public static let tasks = ["niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe"]

    public struct Sample: Sendable {
        public let prompt: String
        public let answers: [String]
        /// Tokens to generate (RULER's per-task output lengths).
        public let maxTokens: Int
    }

    /// A sample of `task` whose prompt fills about `tokens` tokens (measured with `tokenizer`, BOS included).
    public static func sample<G: RandomNumberGenerator>(task: String, haystack: Haystack, tokens: Int, tokenizer: Tokenizer,
                                                        using rng: inout G) throws -> Sample {
        let vocabulary = words(haystack)
        func key() -> String { randomKey(vocabulary, using: &rng) }
        func number() -> String { randomNumber(using: &rng) }

        switch task {
        case "niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery":
            let keys = (0..<4).map { _ in key() }
            var pairs: [(String, String)]
            let asked: [String]
            switch task {
            case "niah_single": pairs = [(keys[0], number())]; asked = [keys[0]]
            case "niah_multikey": pairs = keys.map { ($0, number()) }; asked = [keys[0]]
            case "niah_multivalue": pairs = (0..<4).map { _ in (keys[0], number()) }; asked = [keys[0]]
            default: pairs = keys.map { ($0, number()) }; asked = keys
            }
            pairs.shuffle(using: &rng)
            let answers = pairs.filter { asked.contains($0.0) }.map(\.1)
            let what = asked.joined(separator: ", ")
            let question = task == "niah_multivalue" || task == "niah_multiquery"
                ? "\nWhat are all the special magic numbers for \(what) mentioned in the provided text? The special magic numbers for \(what) mentioned in the provided text are"
                : singleQuestion(what)
            let depths = pairs.map { _ in Double.random(in: 0...1, using: &rng) }
            let text = fit(tokens: tokens, tokenizer: tokenizer) { count in
                var filler = haystack.prefix(words: count)
                for (i, pair) in pairs.enumerated().reversed() {
                    filler.insert(needle(pair.0, pair.1), at: Int(Double(filler.count) * depths[i]))
                }
                return intro + filler.joined(separator: " ") + question
            }
            return Sample(prompt: text, answers: answers, maxTokens: task == "niah_single" || task == "niah_multikey" ? 32 : 64)

        case "vt":
            // One chain of 4 hops: VAR A = 12345, VAR B = VAR A, ... hidden in repeated filler.
            let names = (0..<5).map { _ in String((0..<5).map { _ in "ABCDEFGHIJKLMNOPQRSTUVWXYZ".randomElement(using: &rng)! }) }
            let value = String(Int.random(in: 10_000...99_999, using: &rng))
            let statements = ["VAR \(names[0]) = \(value)."] + (1..<5).map { "VAR \(names[$0]) = VAR \(names[$0 - 1])." }
            let positions = statements.map { _ in Double.random(in: 0...1, using: &rng) }.sorted()
            let filler = Haystack.synthetic
            let text = fit(tokens: tokens, tokenizer: tokenizer) { count in
                var body = filler.prefix(words: count)
                for (i, s) in statements.enumerated().reversed() { body.insert(s, at: Int(Double(body.count) * positions[i])) }
                return "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n" + body.joined(separator: " ")
                    + "\nQuestion: Find all variables that are assigned the value \(value) in the text above. Answer: According to the chain(s) of variable assignment in the text above, 5 variables are assigned the value \(value), they are:"
            }
            return Sample(prompt: text, answers: names, maxTokens: 30)

        case "cwe":
            // 10 common words appear 30 times each (fewer in short prompts), the others 3 times; shuffled.
            var pool = vocabulary.shuffled(using: &rng)
            let common = Array(pool.prefix(10))
            pool.removeFirst(10)
            let text = fit(tokens: tokens, tokenizer: tokenizer) { count in
                let frequency = max(4, min(30, count / 30))
                let rare = Array(pool.prefix(max(0, (count - 10 * frequency) / 3)))
                var list = common.flatMap { Array(repeating: $0, count: frequency) } + rare.flatMap { Array(repeating: $0, count: 3) }
                var shuffler = Xoshiro256StarStar(seed: UInt64(count))
                list.shuffle(using: &shuffler)
                let numbered = list.enumerated().map { "\($0.offset + 1). \($0.element)" }.joined(separator: " ")
                return "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n"
                    + numbered + "\nQuestion: What are the 10 most common words in the above list? Answer: The top 10 words that appear most often in the list are:"
            }
            return Sample(prompt: text, answers: common, maxTokens: 120)

        case "fwe":
            // Coded words drawn from a Zipf distribution (α = 2); the answer is the three most frequent.
            let codes = (0..<200).map { _ in String((0..<6).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement(using: &rng)! }) }
            let weights = (1...codes.count).map { 1 / Double($0 * $0) }
            let total = weights.reduce(0, +)
            let seed = rng.next()
            let text = fit(tokens: tokens, tokenizer: tokenizer) { count in
                var draw = Xoshiro256StarStar(seed: seed)
                let drawn = (0..<count).map { _ -> String in
                    var u = draw.nextUnitDouble() * total
                    for (i, w) in weights.enumerated() { u -= w; if u <= 0 { return codes[i] } }
                    return codes[codes.count - 1]
                }
                return "Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words. "
                    + drawn.joined(separator: " ") + " ... "
                    + "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text? Answer: According to the coded text above, the three most frequently appeared words are:"
            }
            return Sample(prompt: text, answers: Array(codes.prefix(3)), maxTokens: 50)

        default:
            throw InferenceError("unknown RULER task '\(task)'; available: \(tasks.joined(separator: ", "))")
        }
    }

    /// A needle key: two haystack words joined by a hyphen.
    static func randomKey<G: RandomNumberGenerator>(_ vocabulary: [String], using rng: inout G) -> String {
        "\(vocabulary.randomElement(using: &rng)!)-\(vocabulary.randomElement(using: &rng)!)"
    }

    /// A needle value: a 7-digit number without a leading zero.
    static func randomNumber<G: RandomNumberGenerator>(using rng: inout G) -> String {
        String(Int.random(in: 1_000_000...9_999_999, using: &rng))
    }

    /// RULER's needle sentence, the instruction before the haystack and its one-key question.
    static func needle(_ key: String, _ value: String) -> String { "One of the special magic numbers for \(key) is: \(value)." }
    static let intro = "Some special magic numbers are hidden within the following text. Make sure to memorize them. I will quiz you about the numbers afterwards.\n"
    static func singleQuestion(_ key: String) -> String {
        "\nWhat is the special magic number for \(key) mentioned in the provided text? The special magic number for \(key) mentioned in the provided text is"
    }

    /// Fraction of `answers` that occur in `output`, case-insensitive (RULER's "all" match).
    public static func score(output: String, answers: [String]) -> Double {
        guard !answers.isEmpty else { return 0 }
        let text = output.lowercased()
        return Double(answers.filter { text.contains($0.lowercased()) }.count) / Double(answers.count)
    }

    /// The text for the largest word count whose encoding (with BOS) has at most `tokens` tokens.
    static func fit(tokens: Int, tokenizer: Tokenizer, _ make: (Int) -> String) -> String {
        make(largestFitting(tokens: tokens, tokenizer: tokenizer, make))
    }

    /// The largest `n` in 0…tokens for which `make(n)` encodes (with BOS) to at most `tokens` tokens.
    static func largestFitting(tokens: Int, tokenizer: Tokenizer, _ make: (Int) -> String) -> Int {
        var low = 0, high = tokens
        while low < high {
            let mid = (low + high + 1) / 2
            if tokenizer.encode(make(mid), addSpecial: true, parseSpecial: false).count <= tokens { low = mid } else { high = mid - 1 }
        }
        return low
    }

    /// Distinct lower-case alphabetic words of 4–10 letters from the haystack, in first-seen order.
    static func words(_ haystack: Haystack) -> [String] {
        var seen = Set<String>(), result: [String] = []
        for w in haystack.words.prefix(50_000) {
            let word = w.lowercased()
            guard (4...10).contains(word.count), word.allSatisfy({ $0.isLetter && $0.isASCII }), seen.insert(word).inserted else { continue }
            result.append(word)
        }
        return result.count >= 100 ? result : result + (0..<100).map { "word\($0)" }
    }
}
