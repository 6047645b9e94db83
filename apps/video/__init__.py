"""Video classification: frames -> CNN -> recurrent network -> class (data in ``apps.video.data``)."""
