"""The shared edge dataset on the Hub: records and profiles pushed by everyone, checked and synced."""
