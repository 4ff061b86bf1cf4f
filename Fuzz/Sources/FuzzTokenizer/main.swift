import Foundation
import FuzzDriver
import RocketKV

/// The tokenizers of both catalog models: byte-level BPE (SmolLM2) and SentencePiece (Gemma 3), loaded once from
/// the model cache (fetched on first use).
let tokenizers: [Tokenizer] = ModelStore.catalog.map { model in
    do { return try Tokenizer(gguf: try GGUFFile(path: try ModelStore.path(of: model))) } catch {
        fatalError("cannot load the tokenizer of \(model.name): \(error)")
    }
}

/// One input: the first byte picks the tokenizer and the options; the rest is encoded as (lossily decoded)
/// text, and also read as token ids to detokenize. The round trip must give back valid ids and text.
func fuzzTokenizer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let flags = data[0]
    let tokenizer = tokenizers[Int(flags & 1)]
    let bytes = UnsafeBufferPointer(start: data + 1, count: size - 1)
    let text = String(decoding: bytes, as: UTF8.self)
    let ids = tokenizer.encode(text, addSpecial: flags & 2 != 0, parseSpecial: flags & 4 != 0)
    precondition(ids.allSatisfy { (0..<tokenizer.vocabularySize).contains($0) }, "encode produced an id outside the vocabulary")
    _ = tokenizer.decode(ids, special: flags & 8 != 0)
    // Arbitrary ids, including negative and out-of-range ones, decode without trapping.
    var raw: [Int] = []
    var i = 0
    while i + 4 <= bytes.count {
        raw.append(Int(Int32(bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)))
        i += 4
    }
    var stream = StreamingDecoder(tokenizer: tokenizer)
    for id in raw { _ = stream.append(id) }
    _ = stream.finish()
    _ = tokenizer.decode(raw)
    return 0
}

fuzzMain { data, size in fuzzTokenizer(data ?? UnsafePointer(bitPattern: 1)!, size) }
