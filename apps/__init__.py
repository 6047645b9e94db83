"""Lightning applications of rnn_core: translation, captioning, video classification and forecasting."""
