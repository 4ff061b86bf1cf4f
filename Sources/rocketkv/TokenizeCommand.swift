import ArgumentParser
import Foundation
import RocketKV

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize", abstract: "Print the token ids of a text as a JSON array.")

    @Option(name: .long, help: "The text to tokenize.")
    var text: String?

    @Option(name: .long, help: "Read the text from a UTF-8 file.")
    var file: String?

    @Flag(name: .long, help: "Do not add the model's BOS/EOS tokens.")
    var noSpecial = false

    @OptionGroup var modelOptions: ModelOptions

    func validate() throws {
        if (text == nil) == (file == nil) { throw ValidationError("give exactly one of --text or --file") }
    }

    func run() throws {
        let input = try text ?? readTextFile(file!)
        let loaded = try modelOptions.load(needsModel: false)
        let ids = loaded.tokenizer.encode(input, addSpecial: !noSpecial, parseSpecial: true)
        print("[" + ids.map(String.init).joined(separator: ", ") + "]")
    }
}
