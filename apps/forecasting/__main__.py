from apps.common.errors import exit_on_user_error
from apps.forecasting import main

exit_on_user_error(main)
