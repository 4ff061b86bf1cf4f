import ArgumentParser
import RocketKV

struct MethodsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "methods", abstract: "List the KV-cache methods with their options.")

    func run() {
        for method in KVMethods.all {
            print("\(method.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(method.summary)" + (method.needsBudget ? " (needs --budget)" : ""))
            for option in method.options {
                print("             --kv-option \(option.key)=…  \(option)")
            }
        }
    }
}
