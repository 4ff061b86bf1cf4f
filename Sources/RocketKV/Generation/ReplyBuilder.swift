/// The reply of one sequence as it is generated: samples each next token from the logits, turns tokens into
/// text (holding back what may start a stop string) and decides when to stop. `Generator` (one sequence) and
/// `BatchScheduler` (many, batched) both drive one.
struct ReplyBuilder {
    let options: GenerationOptions
    let tokenizer: Tokenizer
    /// The reply so far: tokens, text and (once finished) the stop reason; the driver fills in the timings.
    var result = GenerationResult()
    private var sampler: Sampler
    private var decoder: StreamingDecoder
    private var stops: StopStringFilter

    init(options: GenerationOptions, tokenizer: Tokenizer) {
        self.options = options
        self.tokenizer = tokenizer
        sampler = Sampler(options.sampling)
        decoder = StreamingDecoder(tokenizer: tokenizer)
        stops = StopStringFilter(stopStrings: options.stopStrings)
    }

    /// Samples the next token from `logits` (the last processed token's) given the sequence's `history`.
    /// Returns the new text and the token to feed next, or nil when the reply is finished (`result.stopReason` says why).
    mutating func next(logits: UnsafeMutableBufferPointer<Float>, history: [Int], remainingContext: Int) -> (text: String, feed: Int?) {
        guard result.tokens.count < options.maxTokens else { return (finish(.maxTokens), nil) }
        let token = sampler.sample(logits: logits, history: history)
        if options.stopAtEndOfGeneration && tokenizer.endOfGenerationIDs.contains(token) { return (finish(.endOfGeneration), nil) }
        result.tokens.append(token)
        let (text, stopped) = stops.push(decoder.append(token))
        result.text += text
        if stopped {
            result.stopReason = .stopString
            return (text, nil)
        }
        if result.tokens.count == options.maxTokens { return (text + finish(.maxTokens), nil) }
        if remainingContext <= 0 { return (text + finish(.contextFull), nil) }
        return (text, token)
    }

    /// Ends the reply: the text held back (an incomplete character, a partial stop string) is released.
    private mutating func finish(_ reason: StopReason) -> String {
        result.stopReason = reason
        let (tail, _) = stops.push(decoder.finish(), final: true)
        result.text += tail
        return tail
    }
}
