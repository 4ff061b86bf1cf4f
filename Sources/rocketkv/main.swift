import RocketKV
print("rocketkv")
