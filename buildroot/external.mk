include $(sort $(wildcard $(BR2_EXTERNAL_DCAGENT_PATH)/package/*/*.mk))
